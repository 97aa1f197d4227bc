"""pullback_utils: local latent bases of diffusion models through the pullback metric.

Reproduces and extends Park et al., "Understanding the Latent Space of Diffusion Models through the
Lens of Riemannian Geometry" (NeurIPS 2023).

The public API is small: the engine (:func:`local_basis`, :func:`jacobian_svd`, :func:`feature_map`),
models and sampling (:func:`load_model`, :func:`ddim_sample`, :func:`ddim_invert`), editing
(:func:`edit_image`, :func:`xspace_guidance`, :func:`parallel_transport`) and geometry
(:func:`principal_angles`, :func:`geodesic_distance`). Everything else lives one level down, e.g.
``pullback_utils.claims``, ``pullback_utils.sweeps``, ``pullback_utils.inference``; those submodules load
on first use (``pu.claims`` works after ``import pullback_utils as pu``).
"""

from __future__ import annotations

import importlib
from typing import Any

from .basis import local_basis
from .ddim import ddim_invert, ddim_sample
from .features import feature_map, layer_names
from .geometry import geodesic_distance, principal_angles
from .loading import load_model
from .models import DiffusionModel
from .solvers import LocalBasis, jacobian_svd

__version__ = "0.1.0"

__all__ = [
    "local_basis",
    "jacobian_svd",
    "LocalBasis",
    "feature_map",
    "layer_names",
    "load_model",
    "DiffusionModel",
    "ddim_sample",
    "ddim_invert",
    "edit_image",
    "xspace_guidance",
    "parallel_transport",
    "principal_angles",
    "geodesic_distance",
]

_EDITING = ("edit_image", "xspace_guidance", "parallel_transport")
_SUBMODULES = frozenset({
    "ad_safe", "baselines", "basis", "cache", "chapter", "claims", "conditioning", "costs", "ddim", "editing",
    "families", "features", "flow", "loading", "network",
    "figures", "geometry", "ground_truth", "images", "inference", "intrinsic", "io", "models", "notebook",
    "plotting", "products", "schedule", "scorecard", "solvers", "spectra", "stats", "studies", "sweeps",
    "validate", "zoo", "book",
})


def __getattr__(name: str) -> Any:  # PEP 562: submodules and the editing entry points load lazily
    if name in _EDITING:
        return getattr(importlib.import_module(".editing", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'pullback_utils' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EDITING) | _SUBMODULES)
