"""The one model interface: ``diffusion_model`` (:class:`DiffusionModel`, the architecture hidden) and
``model_basis`` (its basis: the engine on the denoiser, cached).
"""

from pullback_utils._lazy import submodules

__getattr__, __dir__ = submodules(__name__)
