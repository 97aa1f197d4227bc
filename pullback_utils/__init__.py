"""pullback_utils: local latent bases of diffusion models through the pullback metric.

Reproduces and extends Park et al., "Understanding the Latent Space of Diffusion Models through the
Lens of Riemannian Geometry" (NeurIPS 2023).
"""

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

# The public API, loaded on first use (PEP 562): `import pullback_utils` alone imports neither torch nor
# diffusers, so that tools built on the package (the book's command line) start at once.
_EXPORTS = {
    "ad_safe": ["ForwardADAttnProcessor", "forward_ad_safe"],
    "basis": ["local_basis"],
    "features": ["FeatureMap", "feature_map", "layer_names"],
    "products": ["JacobianOperator"],
    "solvers": ["LocalBasis", "jacobian_svd"],
    "geometry": ["geodesic_distance", "low_frequency_share", "mean_frequency", "pairwise_geodesic_distances",
                 "principal_angles", "radial_psd", "random_subspace_distance"],
    "stats": ["bootstrap_ci", "bootstrap_diff_ci", "spearman_trend", "verdict"],
    "ddim": ["ddim_invert", "ddim_sample", "ddim_timesteps"],
    "models": ["DiffusionModel", "ModelNotFoundError", "load_model"],
    "images": ["load_image", "save_grid"],
    "cache": ["BasisCache"],
    "editing": ["EDIT_DEFAULTS", "edit_defaults", "edit_image", "naive_traverse", "parallel_transport",
                "xspace_guidance"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
_SUBMODULES = {"analysis", "ground_truth", "scorecard"}  # listed by dir(); any submodule is an attribute

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from . import analysis, ground_truth, scorecard  # noqa: F401
    from .ad_safe import ForwardADAttnProcessor, forward_ad_safe  # noqa: F401
    from .basis import local_basis  # noqa: F401
    from .cache import BasisCache  # noqa: F401
    from .ddim import ddim_invert, ddim_sample, ddim_timesteps  # noqa: F401
    from .editing import (EDIT_DEFAULTS, edit_defaults, edit_image, naive_traverse,  # noqa: F401
                          parallel_transport, xspace_guidance)
    from .features import FeatureMap, feature_map, layer_names  # noqa: F401
    from .geometry import (geodesic_distance, low_frequency_share, mean_frequency,  # noqa: F401
                           pairwise_geodesic_distances, principal_angles, radial_psd, random_subspace_distance)
    from .images import load_image, save_grid  # noqa: F401
    from .models import DiffusionModel, ModelNotFoundError, load_model  # noqa: F401
    from .products import JacobianOperator  # noqa: F401
    from .solvers import LocalBasis, jacobian_svd  # noqa: F401
    from .stats import bootstrap_ci, bootstrap_diff_ci, spearman_trend, verdict  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f".{name}", __name__)  # pu.models, pu.analysis, ... as before
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE) | _SUBMODULES)


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
