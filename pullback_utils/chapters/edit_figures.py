"""The editing chapter's dose-response figure (in the style of :mod:`pullback_utils.chapters.figures`).

:func:`dose_response_figure` draws, from a :class:`pullback_utils.editing.efficacy.DoseResponse`, the
renderer-factor change (left) and the renderer residual (right) of the guided edits and of the naive steps
that move the state as far, against the state change ``||x^(N) - x_t||``, one line per guidance strength,
the step counts N as points along it. Means over samples with 95% intervals.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pullback_utils.chapters.figures import MIN_FONT, WIDTH, mean_ci, style
from pullback_utils.chapters.plotting import ROLES as COLOURS

__all__ = ["dose_response_figure"]


def dose_response_figure(dr: Any):
    """Two panels over the state change: factor change and renderer residual, guided (solid) and naive (dashed);
    ``dr``: :class:`~pullback_utils.editing.efficacy.DoseResponse` (arrays ``(G, S, n)``)."""
    import matplotlib.pyplot as plt

    markers = "os^Dv<>"
    with style():
        fig, (ax, ax_r) = plt.subplots(1, 2, figsize=(WIDTH, 4.2))
        for i, gamma in enumerate(dr.gammas):
            dx = dr.state_change[i].mean(-1)
            for key, res_key, colour, ls, name in (
                ("guided", "guided_residual", COLOURS["trained"], "-", "guided"),
                ("naive", "naive_residual", COLOURS["matched"], "--", "naive"),
            ):
                for a, values in ((ax, getattr(dr, key)[i]), (ax_r, getattr(dr, res_key)[i])):
                    m, lo, hi = mean_ci(values)
                    a.errorbar(
                        dx,
                        m,
                        yerr=[m - lo, hi - m],
                        fmt=markers[i % len(markers)] + ls,
                        capsize=3,
                        color=colour,
                        alpha=0.5 + 0.5 * (i + 1) / len(dr.gammas),
                        label=f"{name}, gamma = {gamma:g}",
                    )
        ax_r.axhline(float(np.mean(dr.original_residual)), color=COLOURS["reference"], ls=":", label="unedited")
        ax.set_ylabel("renderer-factor change (factor sd)")
        ax_r.set_ylabel("renderer residual (RMS, [0, 1])")
        for a in (ax, ax_r):
            a.set_xlabel("state change ||x^(N) - x_t||")
            a.set_xlim(left=0)
            a.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
        handles, labels = ax_r.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=3, frameon=False, fontsize=MIN_FONT)
    return fig
