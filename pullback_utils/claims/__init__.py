"""The claims layer: the registry of claims, their statistics and tests, and the records chapters write.

A chapter measures, then in a few lines::

    from pullback_utils import claims
    res = claims.stats.coarse_to_fine(ps["low_share"], times)
    rec = claims.record("coarse_to_fine", res, model=name, baselines={...}, controls={...})
    claims.write_metrics(output_dir, "coarse_to_fine", {"coarse_to_fine": rec}, params)

and the scorecard (:mod:`pullback_utils.scorecard`) reads the same registry.
"""

from . import sensitivity
from . import statistics as stats
from .report import sentence, table
from .record import MetricsError, check_record, read_metrics, record, write_metrics
from .registry import CLAIMS, PRIMARY, ClaimSpec, get, outcome_words, support_of

__all__ = ["stats", "sensitivity", "sentence", "table", "record", "check_record", "read_metrics", "write_metrics", "MetricsError", "CLAIMS",
           "PRIMARY", "ClaimSpec", "get", "support_of", "outcome_words"]
