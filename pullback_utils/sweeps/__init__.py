"""Bases over samples x times x prompts: ``bases`` (the serial sweep and its results), ``distributed``
(executors and Ray), ``ray_pool`` and ``worker`` (the Ray driver and worker).
"""

from pullback_utils._lazy import submodules

__getattr__, __dir__ = submodules(__name__)
