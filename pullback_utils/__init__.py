"""pullback_utils: local latent bases of diffusion models through the pullback metric.

Reproduces and extends Park et al., "Understanding the Latent Space of Diffusion Models through the
Lens of Riemannian Geometry" (NeurIPS 2023).

The public API is small: one basis call per level, :func:`local_basis` on any differentiable map
(``pu.local_basis(fn, x, k)``) and the method ``DiffusionModel.local_basis(x_t, t, k, prompt=...)`` on a
model; the engine's parts (:class:`LocalBasis`, :func:`feature_map`, :func:`layer_names`),
models and sampling (:func:`load_model`, :func:`ddim_sample`, :func:`ddim_invert`), editing
(:func:`edit_image`, :func:`xspace_guidance`, :func:`parallel_transport`) and geometry
(:func:`principal_angles`, :func:`geodesic_distance`). Everything else lives one level down
(``pullback_utils.claims``, ``pullback_utils.sweeps.bases``, ``pullback_utils.analysis.inference``, ...), and every
submodule is also an attribute (``pu.claims`` after ``import pullback_utils as pu``).

Everything loads on first use (PEP 562): ``import pullback_utils`` alone imports neither torch nor
diffusers, so tools built on the package (the book's command line) start at once.
"""

import importlib
import importlib.util
import warnings
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "features.basis": ["local_basis"],
    "engine.solvers": ["LocalBasis"],
    "features.feature_maps": ["feature_map", "layer_names"],
    "zoo.loading": ["load_model"],
    "models.diffusion_model": ["DiffusionModel"],
    "diffusion.ddim": ["ddim_sample", "ddim_invert"],
    "editing": ["edit_image", "xspace_guidance", "parallel_transport"],
    "analysis.geometry": ["principal_angles", "geodesic_distance"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
# Deprecated top-level names (removed in the next release): name -> (module, what to use instead).
_DEPRECATED = {
    "jacobian_svd": ("engine.solvers", "pu.local_basis(fn, x, k) or pullback_utils.engine.solvers.jacobian_svd"),
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from pullback_utils.analysis.geometry import geodesic_distance, principal_angles  # noqa: F401
    from pullback_utils.diffusion.ddim import ddim_invert, ddim_sample  # noqa: F401
    from pullback_utils.editing import edit_image, parallel_transport, xspace_guidance  # noqa: F401
    from pullback_utils.engine.solvers import LocalBasis  # noqa: F401
    from pullback_utils.features.basis import local_basis  # noqa: F401
    from pullback_utils.features.feature_maps import feature_map, layer_names  # noqa: F401
    from pullback_utils.models.diffusion_model import DiffusionModel  # noqa: F401
    from pullback_utils.zoo.loading import load_model  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        module, instead = _DEPRECATED[name]
        warnings.warn(
            f"pullback_utils.{name} is deprecated and will be removed in the next release; use {instead}",
            FutureWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(f".{module}", __name__), name)  # not cached: warns on every use
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f".{name}", __name__)  # pu.claims, pu.sweeps.bases, ...
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


__version__ = "0.1.0"

__all__ = sorted(_WHERE)
