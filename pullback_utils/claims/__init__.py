"""The claims layer: the registry of claims, their statistics and tests, and the records chapters write.

A chapter measures, then in a few lines::

    from pullback_utils import claims
    res = claims.statistics.coarse_to_fine(ps["low_share"], times)
    rec = claims.record("coarse_to_fine", res, model=name, baselines={...}, controls={...})
    claims.write_metrics(output_dir, "coarse_to_fine", {"coarse_to_fine": rec}, params)

and the scorecard (:mod:`pullback_utils.chapters.scorecard`) reads the same registry.
"""

import warnings
from typing import Any

from pullback_utils.claims import sensitivity, statistics
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

__all__ = [
    # the registry: every claim's wording, unit, test, baselines and primary model (the only copy)
    "CLAIMS",
    "PRIMARY",
    "ClaimSpec",
    "get",
    "outcome_words",
    # the claims' statistics, and the same claim under other analysis choices
    "statistics",
    "sensitivity",
    # the record contract of metrics.json
    "record",
    "equivalence",
    "check_record",
    "read_metrics",
    "write_metrics",
    "MetricsError",
    "NOT_LEARNED",
    "verdict_of",
    # a claim in words
    "sentence",
    "table",
]


def __getattr__(name: str) -> Any:
    if name == "stats":  # deprecated alias (issue 23), removed in the next release
        warnings.warn(
            "pullback_utils.claims.stats is deprecated and will be removed in the next release; use "
            "pullback_utils.claims.statistics (pullback_utils.analysis.descriptive is another thing)",
            FutureWarning,
            stacklevel=2,
        )
        return statistics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
