"""h = the output of a named layer, and its basis: ``feature_maps`` (the forward pass stopped at a layer),
``ad_safe`` (attention that forward-mode AD can differentiate), ``basis`` (feature map + frozen weights
+ solver), ``cache`` (the basis cache), ``flops`` (FLOP and memory counts of a basis).
"""

from pullback_utils._lazy import submodules

# The public API, grouped by module (each group: the module's job). Names load on first use (PEP 562),
# so importing the package imports none of its modules; ``__all__`` is this table flattened.
_EXPORTS = {
    # basis: the basis: one call on any map, the engine on a denoiser, freezing
    "basis": [
        "local_basis",
        "network_basis",
        "freeze",
        "frozen",
        "SOLVER_OPTIONS",
        "denoiser_signature",
    ],
    # feature_maps: the feature map h (a layer's output)
    "feature_maps": [
        "FeatureMap",
        "feature_map",
        "layer_names",
        "default_layer",
        "resolve_layer",
    ],
    # ad_safe: AD-safe attention
    "ad_safe": [
        "ForwardADAttnProcessor",
        "forward_ad_safe",
        "attention_modules",
    ],
    # cache: the basis cache
    "cache": [
        "BasisCache",
        "BasisCacheWarning",
        "basis_key_fields",
        "module_fingerprint",
        "module_state_token",
        "module_value_probe",
        "resolve_cache_dir",
        "tensor_hash",
    ],
    # flops: FLOP and memory counts of a basis
    "flops": [
        "BasisCost",
        "REAL_CONFIGS",
        "meta_denoiser",
        "basis_costs",
        "seconds_per_basis",
        "count_flops",
    ],
}
__all__ = [name for names in _EXPORTS.values() for name in names]

__getattr__, __dir__ = submodules(__name__, _EXPORTS)
