"""The chapters' figures, in one style: page width, legible fonts, time running from T (left) to 0.

Every function draws inside :func:`pullback_utils.chapters.plotting.book_style` (at most the content column's
width, fonts of at least :data:`MIN_FONT` points) and returns the figure; the caller saves it with
:meth:`pullback_utils.chapters.chapter.Chapter.figure` (:func:`pullback_utils.chapters.plotting.save_figure`), which
requires a caption.

Intervals drawn around means over samples are 95% Student-t intervals; around means over sample
pairs, jackknife intervals over samples (the unit of resampling is the sample, as in the tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pullback_utils.analysis.inference import pair_u_test
from pullback_utils.chapters.plotting import FIGURE_WIDTH_IN, MIN_FONT_PT, book_style

__all__ = ["WIDTH", "MIN_FONT", "style", "low_share_over_t", "gaussian_share_over_t", "psd_curves", "distances_over_t",
           "self_distance_heatmap", "ablation_bars", "mean_ci", "similarity_scatter", "prompt_distances_over_t",
           "ladder_figure", "truth_energy_over_t", "truth_directions", "discrepancy_over_lags"]

WIDTH = FIGURE_WIDTH_IN
MIN_FONT = MIN_FONT_PT
COLOURS = {"model": "tab:blue", "matched": "tab:orange", "control": "tab:red", "random": "grey"}


def style(height: float = 3.2):
    """The book's matplotlib settings (:func:`pullback_utils.chapters.plotting.book_style`)."""
    return book_style(height)


def mean_ci(values: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 95% Student-t interval over ``axis``."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    n = v.shape[axis]
    m = v.mean(axis=axis)
    half = stats.t.ppf(0.975, max(n - 1, 1)) * v.std(axis=axis, ddof=1) / np.sqrt(n) if n > 1 else 0 * m
    return m, m - half, m + half


def _time_axis(ax: Any, times: Sequence[float]) -> None:
    ax.set_xlabel("t / T  (generation runs left to right)")
    ax.set_xlim(max(times) + 0.05, min(times) - 0.05)
    ax.grid(alpha=0.3)


def low_share_over_t(low: np.ndarray, times: Sequence[float], *, control: np.ndarray | None = None,
                     control_times: Sequence[float] = (), white: float | None = None, cutoff: float = 0.0):
    """Low-frequency share ``(n_t, n)`` over t, with the random-weight control and white noise."""
    import matplotlib.pyplot as plt

    with style():
        fig, ax = plt.subplots(figsize=(WIDTH * 0.62, 3.2))
        m, lo, hi = mean_ci(low, axis=1)
        ax.errorbar(times, m, yerr=[m - lo, hi - m], fmt="o-", capsize=3, color=COLOURS["model"], label="trained")
        if control is not None:
            c, clo, chi = mean_ci(control, axis=1)
            ax.errorbar(control_times, c, yerr=[c - clo, chi - c], fmt="s--", capsize=3, color=COLOURS["control"],
                        label="random weights")
        if white is not None:
            ax.axhline(white, color=COLOURS["random"], ls=":", label="white noise")
        ax.set_ylabel(f"energy share at f <= {cutoff:.0f} cycles/image")
        _time_axis(ax, times)
        ax.legend(loc="best")
    return fig


def gaussian_share_over_t(curves: Sequence[dict], times: Sequence[float], *, K: int, chance: float):
    """The "Gaussian share" (energy of a basis in the data's top-K principal components) over t.

    ``curves``: dicts ``{"label", "share" (n_t', n), "times" (n_t'), "style"}`` with ``style`` one of
    ``"model"``, ``"control"``, ``"matched"`` (colours of :data:`COLOURS`) plus an optional ``"fmt"``;
    ``chance``: the share of a random direction, ``K / D`` (dotted)."""
    import matplotlib.pyplot as plt

    with style():
        fig, ax = plt.subplots(figsize=(WIDTH * 0.62, 3.2))
        for c in curves:
            share = np.asarray(c["share"], dtype=np.float64)
            if share.shape[1] > 1 and np.ptp(share, axis=1).max() > 0:
                m, lo, hi = mean_ci(share, axis=1)
            else:
                m = lo = hi = share.mean(axis=1)
            ax.errorbar(c["times"], m, yerr=[m - lo, hi - m], fmt=c.get("fmt", "o-"), capsize=3,
                        color=COLOURS[c.get("style", "model")], label=c["label"])
        ax.axhline(chance, color=COLOURS["random"], ls=":", label=f"random direction (K/D = {chance:.3f})")
        ax.set_ylabel(f"energy share in the data's top {K} PCs")
        ax.set_ylim(-0.02, 1.02)
        _time_axis(ax, times)
        ax.legend(loc="best")
    return fig


def psd_curves(freqs: np.ndarray, psd: np.ndarray, times: Sequence[float], nyquist: int, flat: float):
    """Radially averaged power ``(n_t, n, R)`` per t (mean over samples), log scale, with white noise."""
    import matplotlib.pyplot as plt

    with style():
        fig, ax = plt.subplots(figsize=(WIDTH * 0.62, 3.2))
        colours = plt.cm.viridis(np.linspace(0, 1, len(times)))
        for i, t in enumerate(times):
            ax.semilogy(freqs[: nyquist + 1], psd[i].mean(0)[: nyquist + 1], color=colours[i], label=f"t = {t}")
        ax.axhline(flat, color=COLOURS["random"], ls=":", label="white noise")
        ax.set_xlabel("radial frequency (cycles per image)")
        ax.set_ylabel("mean power per frequency")
        ax.grid(alpha=0.3)
        ax.legend(ncol=2)
    return fig


def _pair_mean_ci(cross: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    res = [pair_u_test(c) for c in cross]
    return (np.array([r.estimate for r in res]), np.array([r.ci[0] for r in res]), np.array([r.ci[1] for r in res]))


def distances_over_t(panels: Sequence[dict[str, Any]], times: Sequence[float]):
    """One panel per side: mean cross-sample distance over t for the model, its spectrum-matched
    twin and the random-weight control, and the isotropic random level.

    ``panels``: dicts with ``title``, ``cross`` ``(n_t, n, n)``, ``matched`` ``(n_t, n, n)``, optional
    ``control`` ``(n_c, n, n)`` with ``control_times``, and ``random`` (a number, rad).
    """
    import matplotlib.pyplot as plt

    with style():
        fig, axes = plt.subplots(1, len(panels), figsize=(WIDTH, 3.2), squeeze=False)
        for ax, p in zip(axes[0], panels):
            for key, label, fmt in (("cross", "trained", "o-"), ("matched", "same spectrum, random", "^:")):
                m, lo, hi = _pair_mean_ci(p[key])
                ax.errorbar(times, m, yerr=[m - lo, hi - m], fmt=fmt, capsize=3, label=label,
                            color=COLOURS["model" if key == "cross" else "matched"])
            if p.get("control") is not None:
                m, lo, hi = _pair_mean_ci(p["control"])
                ax.errorbar(p["control_times"], m, yerr=[m - lo, hi - m], fmt="s--", capsize=3,
                            color=COLOURS["control"], label="random weights")
            ax.axhline(p["random"], color=COLOURS["random"], ls="--", label="isotropic random")
            ax.set_title(p["title"])
            ax.set_ylabel("geodesic distance (rad)")
            _time_axis(ax, times)
        axes[0][0].legend(loc="lower left")
    return fig


def discrepancy_over_lags(lags: dict[float, dict[str, np.ndarray]], *, chance: float, sesoi: float,
                          control: dict[float, dict[str, np.ndarray]] | None = None, anchor: float | None = None):
    """Timestep discrepancy against the gap: left, one sample's distance between its bases at ``anchor`` and
    ``anchor + dt`` (rad) beside the same-time distance to another sample (the reference scale) and the
    chance level (independent random subspaces); right, their ratio per sample with the smallest effect of
    interest. Means with 95% intervals over samples.

    ``lags``/``control``: :func:`pullback_utils.claims.statistics.discrepancy_over_lags` of the trained
    network and of the random-weight control (any subset of the lags)."""
    import matplotlib.pyplot as plt

    with style():
        fig, (ax, ax_r) = plt.subplots(1, 2, figsize=(WIDTH, 3.2))
        for data, colour, name, mk in ((lags, COLOURS["model"], "trained", "o"),
                                       (control, COLOURS["control"], "random weights", "s")):
            if not data:
                continue
            dts = sorted(data)
            for key, ls, label in (("distance", "-", f"{name}: one sample, t vs t + dt"),
                                   ("reference", ":", f"{name}: another sample, same t")):
                m, lo, hi = (np.array(x) for x in zip(*(mean_ci(data[d][key]) for d in dts)))
                ax.errorbar(dts, m, yerr=[m - lo, hi - m], fmt=mk + ls, capsize=3, color=colour, label=label,
                            alpha=1.0 if key == "distance" else 0.6)
            m, lo, hi = (np.array(x) for x in zip(*(mean_ci(data[d]["ratio"]) for d in dts)))
            ax_r.errorbar(dts, m, yerr=[m - lo, hi - m], fmt=mk + "-", capsize=3, color=colour, label=name)
        ax.axhline(chance, color=COLOURS["random"], ls="--", label="chance level (independent random subspaces)")
        ax.set_xlabel("gap dt (fraction of T)" + (f" from t = {anchor:g}" if anchor is not None else ""))
        ax.set_ylabel("geodesic distance (rad)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax_r.axhline(sesoi, color="k", ls="--", lw=1, label=f"smallest effect of interest ({sesoi:g})")
        ax_r.axhline(1.0, color=COLOURS["random"], ls=":", lw=1, label="ratio 1: as far as another sample")
        ax_r.set_xlabel("gap dt (fraction of T)")
        ax_r.set_ylabel("ratio to another sample")
        ax_r.set_ylim(bottom=0)
        ax_r.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        h2, l2 = ax_r.get_legend_handles_labels()
        keep = [(h, lab) for h, lab in zip(h2, l2) if lab not in ("trained", "random weights")]
        fig.set_size_inches(WIDTH, 4.4)
        fig.legend([h for h, _ in [*zip(handles, labels), *keep]], [lab for _, lab in [*zip(handles, labels), *keep]],
                   loc="outside lower center", ncol=2, frameon=False, fontsize=MIN_FONT)
    return fig


def self_distance_heatmap(panels: Sequence[dict[str, Any]], times: Sequence[float]):
    """Mean distance between one sample's bases at every pair of times, one panel per side.

    ``panels``: dicts with ``title``, ``self`` ``(n, n_t, n_t)`` and ``vmax`` (e.g. ``(pi/2) sqrt(k)``)."""
    import matplotlib.pyplot as plt

    with style():
        fig, axes = plt.subplots(1, len(panels), figsize=(WIDTH, 3.4), squeeze=False)
        for ax, p in zip(axes[0], panels):
            mean = np.asarray(p["self"]).mean(0)
            im = ax.imshow(mean, cmap="magma", vmin=0, vmax=p["vmax"])
            labels = [str(t) for t in times]
            ax.set_xticks(range(len(times)), labels)
            ax.set_yticks(range(len(times)), labels)
            ax.set_xlabel("t' / T")
            ax.set_ylabel("t / T")
            ax.set_title(p["title"])
            for (a, b), val in np.ndenumerate(mean):
                ax.text(b, a, f"{val:.1f}", ha="center", va="center", fontsize=MIN_FONT,
                        color="w" if val < 0.6 * p["vmax"] else "k")
            fig.colorbar(im, ax=ax, fraction=0.046, label="rad")
    return fig


def ablation_bars(panels: Sequence[dict[str, Any]]):
    """Bars of the state x time-input ablation per side: ``panels`` with ``title``, ``time_only``,
    ``state_only``, ``total`` (each ``(n,)``) and ``floor`` (the noise floor, rad)."""
    import matplotlib.pyplot as plt

    with style():
        fig, axes = plt.subplots(1, len(panels), figsize=(WIDTH, 3.0), squeeze=False)
        for ax, p in zip(axes[0], panels):
            keys = ("time_only", "state_only", "total")
            stats = [mean_ci(np.asarray(p[k_])) for k_ in keys]
            m = np.array([s[0] for s in stats])
            err = np.array([[s[0] - s[1], s[2] - s[0]] for s in stats]).T
            ax.bar(range(3), m, yerr=err, capsize=4, color=["tab:orange", "tab:green", "tab:blue"])
            ax.axhline(p["floor"], color=COLOURS["random"], ls=":", label="noise floor")
            ax.set_xticks(range(3), ["time input\nonly", "state\nonly", "both"])
            ax.set_ylabel("geodesic distance (rad)")
            ax.set_title(p["title"])
            ax.legend()
    return fig


def similarity_scatter(similarity: np.ndarray, distances: np.ndarray, *, xlabel: str):
    """Distance between two prompts' bases (``(S, P, P)``, mean over states with 95% interval) against
    their similarity ``(P, P)``, one point per prompt pair."""
    import matplotlib.pyplot as plt

    p = similarity.shape[0]
    iu = np.triu_indices(p, 1)
    m, lo, hi = mean_ci(distances[:, iu[0], iu[1]], axis=0)
    with style():
        fig, ax = plt.subplots(figsize=(WIDTH * 0.55, 3.2))
        jitter = np.random.default_rng(0).uniform(-0.08, 0.08, m.size)
        ax.errorbar(similarity[iu] + jitter, m, yerr=[m - lo, hi - m], fmt="o", capsize=2, color=COLOURS["model"])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("distance between the bases (rad)")
        ax.grid(alpha=0.3)
    return fig


def prompt_distances_over_t(between: np.ndarray, to_empty: np.ndarray, times: Sequence[float], *,
                            control_between: np.ndarray | None = None, random: float | None = None):
    """Mean distance between different prompts' bases and to the empty prompt's, per state ``(S, n_t)``,
    over t (mean and 95% interval over states)."""
    import matplotlib.pyplot as plt

    with style():
        fig, ax = plt.subplots(figsize=(WIDTH * 0.55, 3.2))
        for vals, label, fmt, col in ((between, "between prompts", "o-", COLOURS["model"]),
                                      (to_empty, "prompt vs empty prompt", "s--", COLOURS["matched"]),
                                      (control_between, "between prompts, random weights", "^:", COLOURS["control"])):
            if vals is None:
                continue
            m, lo, hi = mean_ci(vals, axis=0)
            ax.errorbar(times, m, yerr=[m - lo, hi - m], fmt=fmt, capsize=3, label=label, color=col)
        if random is not None:
            ax.axhline(random, color=COLOURS["random"], ls="--", label="isotropic random")
        ax.set_ylabel("geodesic distance (rad)")
        _time_axis(ax, times)
        ax.legend()
    return fig


def ladder_figure(curves: dict[str, np.ndarray], rung: dict[str, int], counts: dict[int, int], times: Sequence[float],
                  dimension: dict[int, float] | None = None):
    """Left: each ladder model's mean cross-sample distance over t, coloured by rung. Right: the model's
    mean over t against its rung's factor count (one point per training seed), with the rung's estimated
    intrinsic dimension on a secondary top axis when given."""
    import matplotlib.pyplot as plt

    rungs = sorted(set(rung.values()))
    colours = dict(zip(rungs, plt.cm.viridis(np.linspace(0, 0.9, len(rungs)))))
    with style():
        fig, (a, b) = plt.subplots(1, 2, figsize=(WIDTH, 3.3))
        for name, c in curves.items():
            a.plot(times, c, "o-", color=colours[rung[name]], alpha=0.8, ms=3,
                   label=f"rung {rung[name]} ({counts[rung[name]]} factors)")
        handles, labels = a.get_legend_handles_labels()
        keep = dict(zip(labels, handles))
        a.legend(keep.values(), keep.keys(), loc="best")
        a.set_ylabel("cross-sample distance (rad)")
        _time_axis(a, times)
        for name, c in curves.items():
            b.plot(counts[rung[name]], float(np.mean(c)), "o", color=colours[rung[name]])
        b.set_xlabel("free factors of the training data")
        b.set_ylabel("mean over t (rad)")
        b.grid(alpha=0.3)
        if dimension:
            top = b.secondary_xaxis("top")
            xs = [counts[r] for r in rungs]
            top.set_xticks(xs, [f"{dimension[r]:.1f}" for r in rungs])
            top.set_xlabel("estimated intrinsic dimension (TwoNN)")
    return fig


def truth_energy_over_t(panels: Sequence[dict[str, Any]], times: Sequence[float]):
    """Energy fractions in the pushed tangent span over t, one panel per model (log scale).

    ``panels``: dicts with ``title``; ``basis``, ``matched``, ``isotropic`` ``(n_t, n)``; ``pca``,
    ``denoiser``, ``control`` ``(n,)`` and ``best_t`` (where the held-out-time values are drawn).
    Means with 95% intervals over images; lower ends are clipped for the log axis."""
    import matplotlib.pyplot as plt

    def bars(ax, x, v, axis, **kw):
        m, lo, hi = mean_ci(np.asarray(v), axis=axis)
        lo = np.maximum(lo, 0.5 * np.minimum(m, np.min(m)))
        ax.errorbar(x, m, yerr=[m - lo, hi - m], capsize=3, **kw)

    with style():
        fig, axes = plt.subplots(1, len(panels), figsize=(WIDTH, 3.6), squeeze=False, sharey=True)
        for ax, p in zip(axes[0], panels):
            bars(ax, times, p["basis"], 1, fmt="o-", color=COLOURS["model"], label="local basis")
            bars(ax, times, p["matched"], 1, fmt="^:", color=COLOURS["matched"], label="same spectrum, random")
            ax.plot(times, np.asarray(p["isotropic"]).mean(1), "--", color=COLOURS["random"], label="isotropic r/D")
            m, lo, hi = mean_ci(np.asarray(p["pca"])[None], axis=1)
            ax.axhspan(max(float(lo[0]), 1e-6), min(float(hi[0]), 1.0), color="tab:green", alpha=0.2)
            ax.axhline(float(m[0]), color="tab:green", ls="-.", label="local PCA (clean span)")
            step = 0.04 * (max(times) - min(times) or 1.0)
            bars(ax, [p["best_t"] + step], np.asarray(p["denoiser"])[None], 1, fmt="D", color="tab:purple",
                 label="denoiser Jacobian")
            bars(ax, [p["best_t"] - step], np.asarray(p["control"])[None], 1, fmt="s", color=COLOURS["control"],
                 label="random weights")
            ax.set_yscale("log")
            ax.set_ylim(top=1.0)
            ax.set_title(p["title"])
            _time_axis(ax, times)
        axes[0][0].set_ylabel("energy fraction in\npushed tangent span")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False)
        fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig


def truth_directions(image: Any, clean: Any, pushed: Any, basis: Any, *, factor_names: Sequence[str],
                     energies: Sequence[float], t: float):
    """One image's tangent vectors and basis vectors, each scaled to its largest absolute entry.

    Rows: the image and ``d image / d factor`` (``clean`` ``(K, C, H, W)``); the same tangents pushed to
    ``x_t`` (``pushed`` ``(K, C, H, W)``); the local basis at ``x_t`` (``basis`` ``(k, C, H, W)``) with each
    vector's energy fraction in the pushed span. Tensors in model range ``[-1, 1]`` (the image)."""
    import matplotlib.pyplot as plt
    import torch

    def scaled(x):
        x = torch.as_tensor(x).detach().float()
        return x / x.flatten(1).abs().amax(1).clamp_min(1e-12)[:, None, None, None]

    def rgb(x):
        return ((x.permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1)

    rows = [("tangents", [torch.as_tensor(image).float()] + list(scaled(clean)), ["image"] + list(factor_names)),
            (f"pushed\nt = {t}", [None] + list(scaled(pushed)), [""] + list(factor_names)),
            (f"basis\nt = {t}", [None] + list(scaled(basis)), [""] + [f"v{i + 1}: {e:.2f}" for i, e in
                                                                     enumerate(energies)])]
    cols = max(len(r[1]) for r in rows)
    cell = min(0.8, (WIDTH - 0.9) / cols)
    with style():
        fig, axes = plt.subplots(3, cols, figsize=(cell * cols + 0.9, cell * 3 + 0.9), squeeze=False)
        for r, (label, ims, names) in enumerate(rows):
            for c in range(cols):
                ax = axes[r, c]
                ax.set_xticks([])
                ax.set_yticks([])
                if c < len(ims) and ims[c] is not None:
                    ax.imshow(rgb(ims[c]), interpolation="nearest")
                    ax.set_title(names[c], fontsize=MIN_FONT)
                else:
                    ax.set_frame_on(False)
            axes[r, 0].set_ylabel(label, fontsize=MIN_FONT, rotation=0, ha="right", va="center")
        fig.tight_layout()
    return fig
