"""Numbers about bases: ``geometry`` (angles, distances, similarity), ``spectra``, ``intrinsic_dimension``,
``descriptive`` (bootstrap intervals, Spearman), ``inference`` (tests, Holm, the verdict rule) and
``baselines`` (spectrum-matched twins, noise floors).
"""

from pullback_utils._lazy import submodules

# The public API, grouped by module (each group: the module's job). Names load on first use (PEP 562),
# so importing the package imports none of its modules; ``__all__`` is this table flattened.
_EXPORTS = {
    # geometry: angles, distances, similarity
    "geometry": [
        "principal_angles",
        "geodesic_distance",
        "pairwise_geodesic_distances",
        "random_subspace_distance",
        "random_subspace_angles",
        "weighted_overlap",
        "pairwise_weighted_overlaps",
    ],
    # spectra: spectra of bases
    "spectra": [
        "radial_frequency_grid",
        "radial_psd",
        "low_frequency_share",
        "mean_frequency",
        "white_noise_low_share",
        "psd_summary",
    ],
    # intrinsic_dimension: intrinsic dimension
    "intrinsic_dimension": [
        "twonn_dimension",
    ],
    # descriptive: descriptive bootstrap intervals, Spearman
    "descriptive": [
        "bootstrap_ci",
        "bootstrap_ci_from_index",
        "bootstrap_diff_ci",
        "bootstrap_pairwise_mean_ci",
        "spearman",
        "spearman_trend",
    ],
    # inference: hypothesis tests, Holm, the verdict rule
    "inference": [
        "REPRODUCED",
        "NOT_REPRODUCED",
        "INCONCLUSIVE",
        "UNDERPOWERED",
        "ALPHA",
        "POWER_TARGET",
        "PAIR_MIN_UNITS",
        "TestResult",
        "sign_flip_test",
        "pair_u_test",
        "permutation_trend_test",
        "mantel_test",
        "holm",
        "decide",
        "direction_sign",
        "required_units",
        "SIGN_FLIP_EXACT_CAP",
        "PERMUTATION_EXACT_CAP",
        "nested_trend_test",
        "automorphisms",
        "tost_test",
    ],
    # baselines: matched baselines
    "baselines": [
        "spectrum_matched",
        "random_weight_model",
        "noise_floor",
        "normalised_distance",
    ],
    # gaussian: the Gaussian control (the optimal linear denoiser)
    "gaussian": [
        "OUTPUTS",
        "GaussianFit",
        "fit_gaussian",
        "fit_dataset",
        "jacobian_eigenvalues",
        "denoise",
        "GaussianDenoiser",
        "gaussian_basis",
        "gaussian_share",
        "energy_low_share",
        "DEFAULT_SHARE_K",
        "MAX_DENSE_DIM",
    ],
}
__all__ = [name for names in _EXPORTS.values() for name in names]

__getattr__, __dir__ = submodules(__name__, _EXPORTS)
