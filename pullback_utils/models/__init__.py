"""The one model interface: ``diffusion_model`` (:class:`DiffusionModel`, the architecture hidden) and
``model_basis`` (its basis: the engine on the denoiser, cached).
"""

from pullback_utils._lazy import submodules

# The public API, grouped by module (each group: the module's job). Names load on first use (PEP 562),
# so importing the package imports none of its modules; ``__all__`` is this table flattened.
_EXPORTS = {
    # diffusion_model: the model interface
    "diffusion_model": [
        "DiffusionModel",
    ],
    # model_basis: the model's feature map and basis
    "model_basis": [
        "model_feature_map",
        "model_local_basis",
    ],
}
__all__ = [name for names in _EXPORTS.values() for name in names]

__getattr__, __dir__ = submodules(__name__, _EXPORTS)
