"""The claims layer: the registry of claims, their statistics and tests, and the records chapters write.

A chapter measures, then in a few lines::

    from pullback_utils import claims
    res = claims.stats.coarse_to_fine(ps["low_share"], times)
    rec = claims.record("coarse_to_fine", res, model=name, baselines={...}, controls={...})
    claims.write_metrics(output_dir, "coarse_to_fine", {"coarse_to_fine": rec}, params)

and the scorecard (:mod:`pullback_utils.chapters.scorecard`) reads the same registry.
"""

from pullback_utils.claims import sensitivity
from pullback_utils.claims import statistics as stats
from pullback_utils.claims.record import (
           NOT_LEARNED,
           MetricsError,
           check_record,
           equivalence,
           read_metrics,
           record,
           verdict_of,
           write_metrics,
)
from pullback_utils.claims.registry import CLAIMS, PRIMARY, ClaimSpec, get, outcome_words
from pullback_utils.claims.report import sentence, table

__all__ = ["stats", "sensitivity", "sentence", "table", "record", "equivalence", "check_record", "read_metrics", "write_metrics", "MetricsError", "NOT_LEARNED", "verdict_of", "CLAIMS",
           "PRIMARY", "ClaimSpec", "get", "outcome_words"]
