"""Diffusion models' time and parts: ``schedule`` (the one time convention), ``ddim``, ``flow`` (flow
matching), ``vae``, ``images`` (in/out), ``prompts`` (prompts -> encoder states), ``architectures``
(the table of supported denoisers), ``weights`` (digests).
"""

from pullback_utils._lazy import submodules

__getattr__, __dir__ = submodules(__name__)
