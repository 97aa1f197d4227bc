"""The basis engine: f, x -> J and J^T on blocks of vectors -> the top-k SVD. torch only; knows nothing of
diffusion. ``operators`` (J.V, J^T.U, modes, chunking), ``solvers`` (exact, power, randomized, Krylov
and the a-posteriori angle estimate), ``ritz`` (Rayleigh-Ritz).
"""

from pullback_utils._lazy import submodules

__getattr__, __dir__ = submodules(__name__)
