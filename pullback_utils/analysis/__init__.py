"""Numbers about bases: ``geometry`` (angles, distances, similarity), ``spectra``, ``intrinsic_dimension``,
``descriptive`` (bootstrap intervals, Spearman), ``inference`` (tests, Holm, the verdict rule) and
``baselines`` (spectrum-matched twins, noise floors).
"""

from pullback_utils._lazy import submodules

__getattr__, __dir__ = submodules(__name__)
