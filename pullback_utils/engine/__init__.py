"""The basis engine: f, x -> J and J^T on blocks of vectors -> the top-k SVD. torch only; knows nothing of
diffusion. ``operators`` (J.V, J^T.U, modes, chunking), ``solvers`` (exact, power, randomized, Krylov
and the a-posteriori angle estimate), ``ritz`` (Rayleigh-Ritz).
"""

from pullback_utils._lazy import submodules

# The public API, grouped by module (each group: the module's job). Names load on first use (PEP 562),
# so importing the package imports none of its modules; ``__all__`` is this table flattened.
_EXPORTS = {
    # operators: Jacobian products J·V and Jᵀ·U on blocks of vectors (modes, chunking)
    "operators": [
        "JacobianOperator",
        "DEFAULT_CHUNK_SIZE",
        "DEFAULT_JVP_MODE",
        "JVP_MODES",
        "CHUNK_ENV",
        "JVP_MODE_ENV",
        "auto_choices",
        "default_chunk_size",
        "default_jvp_mode",
    ],
    # solvers: the top-k SVD: solvers (exact, power, randomized, Krylov) and their result
    "solvers": [
        "LocalBasis",
        "jacobian_svd",
        "METHODS",
        "DegenerateJacobianWarning",
        "basis_warnings",
    ],
    # ritz: Rayleigh-Ritz and the a-posteriori angle estimate
    "ritz": [
        "ErrorMonitor",
        "Ritz",
        "complete_rows",
        "max_angle",
        "noise_rtol",
        "numerical_rank",
        "orthonormal_rows",
        "random_rows",
        "rank_rtol",
        "rayleigh_ritz",
    ],
    # jvp_memory: the memory each J·V mode needs
    "jvp_memory": [
        "BLOCK_FACTORS",
        "HEADROOM",
        "saved_bytes",
        "block_bytes",
        "available_bytes",
        "fitting_modes",
    ],
}
__all__ = [name for names in _EXPORTS.values() for name in names]

__getattr__, __dir__ = submodules(__name__, _EXPORTS)
