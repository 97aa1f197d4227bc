"""h = the output of a named layer, and its basis: ``feature_maps`` (the forward pass stopped at a layer),
``ad_safe`` (attention that forward-mode AD can differentiate), ``basis`` (feature map + frozen weights
+ solver), ``cache`` (the basis cache), ``flops`` (FLOP and memory counts of a basis).
"""

from pullback_utils._lazy import submodules

__getattr__, __dir__ = submodules(__name__)
