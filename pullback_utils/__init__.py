"""pullback_utils: local latent bases of diffusion models through the pullback metric.

Reproduces and extends Park et al., "Understanding the Latent Space of Diffusion Models through the
Lens of Riemannian Geometry" (NeurIPS 2023).
"""

from .ad_safe import ForwardADAttnProcessor, forward_ad_safe
from .basis import local_basis
from .features import FeatureMap, feature_map, layer_names
from .products import JacobianOperator
from .solvers import LocalBasis, jacobian_svd
from .geometry import (
    geodesic_distance,
    low_frequency_share,
    mean_frequency,
    pairwise_geodesic_distances,
    principal_angles,
    radial_psd,
    random_subspace_distance,
)
from .stats import bootstrap_ci, bootstrap_diff_ci, spearman_trend, verdict
from .ddim import ddim_invert, ddim_sample, ddim_timesteps
from .models import DiffusionModel, ModelNotFoundError, load_model
from .images import load_image, save_grid
from .cache import BasisCache
from . import analysis  # sweeps and claim statistics of the analysis chapters
from . import ground_truth  # tangent-space ground truth of the procedural zoo datasets
from . import scorecard  # the claims scorecard, read from the chapters' metrics.json
from .editing import (
    EDIT_DEFAULTS,
    edit_defaults,
    edit_image,
    naive_traverse,
    parallel_transport,
    xspace_guidance,
)

__version__ = "0.1.0"

__all__ = [
    "ForwardADAttnProcessor",
    "forward_ad_safe",
    "local_basis",
    "FeatureMap",
    "feature_map",
    "layer_names",
    "JacobianOperator",
    "LocalBasis",
    "jacobian_svd",
    "principal_angles",
    "geodesic_distance",
    "pairwise_geodesic_distances",
    "random_subspace_distance",
    "radial_psd",
    "low_frequency_share",
    "mean_frequency",
    "bootstrap_ci",
    "bootstrap_diff_ci",
    "spearman_trend",
    "verdict",
    "ddim_sample",
    "ddim_invert",
    "ddim_timesteps",
    "DiffusionModel",
    "ModelNotFoundError",
    "load_model",
    "load_image",
    "save_grid",
    "BasisCache",
    "EDIT_DEFAULTS",
    "edit_defaults",
    "edit_image",
    "naive_traverse",
    "parallel_transport",
    "xspace_guidance",
]
