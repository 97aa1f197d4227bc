"""Ground truth on procedural data: how much of the local latent basis lies in the data's tangent space.

Only on data with a known manifold can one check whether the local basis follows it. The zoo's
procedural images are ``render(factors)``, so the tangent space at an image is known exactly; the
modules of this package measure alignment with it:

- :mod:`.tangents` -- the true tangent spaces, energy fractions in a span, random and local-PCA levels;
- :mod:`.pushforward` -- the model side: the tangents pushed to ``x_t`` through the DDIM inversion by
  forward-mode JVPs (where the basis lives), and the denoiser-Jacobian basis ``d x0_hat / d x_t``;
- :mod:`.selection` -- the best timestep chosen leave-one-out, and the sign-flip test there;
- :mod:`.study` -- the chapter's measurements for one model (basis, same-spectrum twin, isotropic
  random, local PCA, denoiser Jacobian, random-weight control).
"""

from pullback_utils.ground_truth.pushforward import denoiser_basis, denoiser_fn, invert_to_times, pushed_tangents
from pullback_utils.ground_truth.selection import cross_fitted_best, excess_test, loo_best_index
from pullback_utils.ground_truth.study import (
    TruthStudy,
    check_design,
    claim_tests,
    mean_energy,
    model_dataset,
    truth_study,
)
from pullback_utils.ground_truth.tangents import (
    GROUND_TRUTH_DATASETS,
    data_tangent_bases,
    energy_fraction,
    local_pca,
    random_energy,
    random_energy_mc,
    smallest_angle,
    tangent_basis,
)

__all__ = [
    # the data side: true tangent spaces, energy fractions, random and local-PCA levels
    "GROUND_TRUTH_DATASETS",
    "tangent_basis",
    "data_tangent_bases",
    "energy_fraction",
    "random_energy",
    "random_energy_mc",
    "smallest_angle",
    "local_pca",
    # the model side: tangents pushed to x_t, the denoiser-Jacobian basis
    "invert_to_times",
    "pushed_tangents",
    "denoiser_fn",
    "denoiser_basis",
    # the best timestep, chosen leave-one-out, and the test there
    "loo_best_index",
    "cross_fitted_best",
    "excess_test",
    # the chapter's study of one model
    "TruthStudy",
    "truth_study",
    "mean_energy",
    "model_dataset",
    "check_design",
    "claim_tests",
]
