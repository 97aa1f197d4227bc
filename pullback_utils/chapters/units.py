"""The units behind a claim: each unit's value of the claim's statistic as a point, beside the estimate and
95% interval of the claim's own test, for the trained network and its random-weight control, matched
baseline and Gaussian control (:func:`claim_units`), so that a reader sees whether an effect is carried by
all units or by two. Drawn with seaborn (the ``[book]`` extra) in the book's style and colours
(:data:`pullback_utils.chapters.plotting.ROLES`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pullback_utils.chapters.plotting import FIGURE_WIDTH_IN, ROLES, book_style

__all__ = ["LABELS", "unit_values", "claim_units"]

#: How each role is named on the panel (the colours: :data:`pullback_utils.chapters.plotting.ROLES`).
LABELS = {
    "trained": "trained",
    "random_weights": "random weights",
    "matched": "matched baseline",
    "gaussian": "Gaussian control",
}


def unit_values(values: Any) -> np.ndarray:
    """``(n,)`` one value per unit: ``values`` itself, or for a symmetric ``(n, n)`` matrix of pair values
    each unit's mean over its pairs (the diagonal left out; their mean is the mean over pairs)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 2 and v.shape[0] == v.shape[1] and v.shape[0] > 1:
        return (v.sum(1) - np.diag(v)) / (v.shape[0] - 1)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"values must be (n,) per-unit values or an (n, n) pair matrix, got shape {v.shape}")
    return v


def _wrap(text: str, width: int = 12) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _estimate(result: Any) -> tuple[float, tuple[float, float], str, dict]:
    if isinstance(result, Mapping):
        return float(result["estimate"]), tuple(result["ci"]), str(result.get("test", "")), result.get("details") or {}
    return float(result.estimate), tuple(result.ci), str(result.test), dict(result.extra)


def _units_of(result: Any, values: Any) -> np.ndarray:
    est, _, test, details = _estimate(result)
    if values is None:
        stored = details.get("per_stratum", details.get("group_means"))
        if stored is None:
            raise ValueError("values is None and the result stores no per-unit values: pass those the test was given")
        values = list(stored.values()) if isinstance(stored, Mapping) else stored
    units = unit_values(values)
    if test.startswith(("sign-flip", "jackknife", "Mantel")) and not np.isclose(units.mean(), est, 1e-6, 1e-9):
        raise ValueError(
            f"the unit values' mean {units.mean():.6g} is not the test's estimate {est:.6g}: pass the "
            "values the test was given"
        )
    return units


def claim_units(panels: Sequence[Mapping[str, Any]], *, height: float = 3.4):
    """The units behind claims: per panel (one claim), each group's per-unit values of the claim's statistic as
    points, with the estimate and 95% interval of the claim's own test (black diamond and bar) and the claim's
    null or smallest effect of interest (dashed).

    ``panels``: dicts with ``title``, ``ylabel``, ``null`` and ``groups`` ``{role: (result, values)}`` in
    drawing order (roles: the keys of :data:`LABELS`); ``result`` a
    :class:`~pullback_utils.analysis.inference.TestResult` or record dict (``estimate``, ``ci``); ``values`` what
    the test was given, ``(n,)`` per unit or a symmetric ``(n, n)`` pair matrix (:func:`unit_values`), or
    ``None`` for the units the result stores (a Mantel test's ``per_stratum``, a nested trend's
    ``group_means``). A sign-flip, jackknife or Mantel test's units must average to its estimate (else
    :class:`ValueError`). Optional: ``labels`` ``{role: text}``; ``lines`` ``[(value, label)]`` further
    reference levels (dotted, e.g. an equivalence margin); for a trend claim ``x`` ``{role: (n,)}`` and
    ``xlabel`` (and ``legend_title``, ``replicates`` ``{role: (x, y)}`` the replicates nested in each unit, drawn
    as faint points): the units drawn against their covariate, the estimate (e.g. Spearman's rho)
    and its interval in the legend (``null`` is then not drawn: it is on the estimate's scale, not the units').
    """
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    if not panels:
        raise ValueError("panels must hold at least one claim")
    with book_style(height):
        fig, axes = plt.subplots(
            1, len(panels), figsize=(FIGURE_WIDTH_IN * (1 if len(panels) > 1 else 0.6), height), squeeze=False
        )
        for ax, p in zip(axes[0], panels):
            groups = dict(p["groups"])
            if set(groups) - set(LABELS):
                raise ValueError(f"groups has roles {sorted(set(groups) - set(LABELS))}; valid: {list(LABELS)}")
            labels = {**LABELS, **dict(p.get("labels", {}))}
            units = {r: _units_of(res, vals) for r, (res, vals) in groups.items()}
            if p.get("x"):
                for r, (res, _) in groups.items():
                    est, (lo, hi), _, _ = _estimate(res)
                    sns.lineplot(
                        x=p["x"][r],
                        y=units[r],
                        marker="o",
                        color=ROLES[r],
                        ax=ax,
                        label=f"{labels[r]}: {est:.2f} [{lo:.2f}, {hi:.2f}]",
                    )
                for r, (xr, yr) in dict(p.get("replicates", {})).items():
                    ax.scatter(xr, yr, s=12, color=ROLES[r], alpha=0.45, zorder=1)
                ax.set_xlabel(p.get("xlabel", ""))
                ax.legend(title=p.get("legend_title"), loc="best")
            else:
                names = [f"{_wrap(labels[r])}\n(n = {units[r].size})" for r in groups]
                df = pd.DataFrame(
                    {
                        "group": np.repeat(names, [units[r].size for r in groups]),
                        "value": np.concatenate([units[r] for r in groups]),
                    }
                )
                sns.stripplot(
                    df,
                    x="group",
                    y="value",
                    hue="group",
                    order=names,
                    hue_order=names,
                    palette=[ROLES[r] for r in groups],
                    jitter=0.18,
                    size=4,
                    alpha=0.75,
                    legend=False,
                    ax=ax,
                )
                for i, (res, _) in enumerate(groups.values()):
                    est, (lo, hi), _, _ = _estimate(res)
                    ax.errorbar(
                        [i + 0.32],
                        [est],
                        yerr=[[est - lo], [hi - est]],
                        fmt="D",
                        color="black",
                        capsize=4,
                        ms=5,
                        zorder=5,
                        label="estimate, 95% interval" if i == 0 else None,
                    )
                ax.set_xlabel("")
                ax.set_xlim(-0.5, len(groups) - 0.3)
                ax.axhline(p["null"], color=ROLES["reference"], ls="--", lw=1, zorder=0)
            for value, label in p.get("lines", ()):
                ax.axhline(value, color=ROLES["reference"], ls=":", lw=1, label=label)
            if p.get("lines"):
                ax.legend(loc="best")
            ax.set_ylabel(p["ylabel"])
            ax.set_title(p["title"])
    return fig
