"""The chapters' statistical figures (seaborn, the ``[book]`` extra), in one style: page width, legible fonts,
the colours of :data:`pullback_utils.chapters.plotting.ROLES`, time running from T (left) to 0.

Every function draws inside :func:`pullback_utils.chapters.plotting.book_style` and returns the figure; the
caller saves it with :meth:`pullback_utils.chapters.chapter.Chapter.figure`, which requires a caption.
Intervals are never seaborn's bootstrap: over samples, 95% Student-t intervals (the sign-flip test's, given to
seaborn as its ``errorbar``); over sample pairs, :func:`pullback_utils.analysis.inference.pair_u_test`'s
jackknife intervals (the sample is the unit). The units behind a claim: :mod:`pullback_utils.chapters.units`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pullback_utils.analysis.inference import pair_u_test
from pullback_utils.chapters.plotting import FIGURE_WIDTH_IN, MIN_FONT_PT, ROLES, book_style

__all__ = [
    "WIDTH",
    "MIN_FONT",
    "COLOURS",
    "style",
    "mean_ci",
    "over_t",
    "psd_curves",
    "distances_over_t",
    "discrepancy_over_lags",
    "self_distance_heatmap",
    "ablation_bars",
    "similarity_scatter",
    "ladder_figure",
    "truth_energy_over_t",
    "truth_directions",
]

WIDTH = FIGURE_WIDTH_IN
MIN_FONT = MIN_FONT_PT
COLOURS = ROLES  # by role: trained, random_weights, matched, gaussian, reference


def style(height: float = 3.2):
    """The book's matplotlib settings and seaborn theme (:func:`pullback_utils.chapters.plotting.book_style`)."""
    return book_style(height)


def mean_ci(values: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 95% Student-t interval over ``axis``."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    n = v.shape[axis]
    m = v.mean(axis=axis)
    half = stats.t.ppf(0.975, max(n - 1, 1)) * v.std(axis=axis, ddof=1) / np.sqrt(n) if n > 1 else 0 * m
    return m, m - half, m + half


def _t_interval(v: Any) -> tuple[float, float]:
    return float(mean_ci(v)[1]), float(mean_ci(v)[2])


def _time_axis(ax: Any, times: Sequence[float]) -> None:
    ax.set_xlabel("t / T  (generation runs left to right)")
    ax.set_xlim(max(times) + 0.05, min(times) - 0.05)


def _line(
    ax: Any,
    values: Any,
    x: Sequence[float],
    role: str,
    label: str,
    *,
    ls: str = "-",
    marker: str = "o",
    alpha: float = 1.0,
) -> None:
    """Mean of ``values`` ``(len(x), n)`` (the units along axis 1) with its Student-t band, through seaborn."""
    import seaborn as sns

    v = np.asarray(values, dtype=np.float64)
    sns.lineplot(
        x=np.repeat(np.asarray(x, dtype=np.float64), v.shape[1]),
        y=v.ravel(),
        errorbar=_t_interval,
        marker=marker,
        linestyle=ls,
        color=COLOURS[role],
        label=label,
        alpha=alpha,
        ax=ax,
    )


def _band(ax: Any, x: Sequence[float], est: Any, lo: Any, hi: Any, role: str, label: str, **kw: Any) -> None:
    """An estimate with an interval computed elsewhere (a test's), drawn as a line with its band."""
    import seaborn as sns

    sns.lineplot(
        x=np.asarray(x, dtype=np.float64),
        y=np.asarray(est),
        errorbar=None,
        color=COLOURS[role],
        label=label,
        ax=ax,
        **kw,
    )
    ax.fill_between(np.asarray(x, dtype=np.float64), lo, hi, color=COLOURS[role], alpha=0.2, lw=0)


def over_t(
    curves: Sequence[Mapping[str, Any]],
    times: Sequence[float],
    *,
    ylabel: str,
    lines: Sequence[tuple[float, str, str]] = (),
    ylim: tuple[float, float] | None = None,
    width: float = 0.62,
):
    """Curves over t (T on the left): each a mean with its 95% Student-t band over the units.

    ``curves``: dicts ``{"label", "values" (n_t', n) (units along axis 1), "role"}`` (a key of :data:`COLOURS`)
    with optional ``"times"`` (``n_t'``, default ``times``), ``"ls"``, ``"marker"``; ``lines``: horizontal
    reference levels ``(value, label, linestyle)`` (white noise, chance); ``width``: share of the page."""
    import matplotlib.pyplot as plt

    with style():
        fig, ax = plt.subplots(figsize=(WIDTH * width, 3.2))
        for c in curves:
            _line(
                ax,
                c["values"],
                c.get("times", times),
                c["role"],
                c["label"],
                ls=c.get("ls", "-"),
                marker=c.get("marker", "o"),
            )
        for value, label, ls in lines:
            ax.axhline(value, color=COLOURS["reference"], ls=ls, label=label)
        ax.set_ylabel(ylabel)
        ax.set_ylim(ylim)
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
        ax.axhline(flat, color=COLOURS["reference"], ls=":", label="white noise")
        ax.set_xlabel("radial frequency (cycles per image)")
        ax.set_ylabel("mean power per frequency")
        ax.legend(ncol=2)
    return fig


def _pair_mean_ci(cross: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    res = [pair_u_test(c) for c in cross]
    return (np.array([r.estimate for r in res]), np.array([r.ci[0] for r in res]), np.array([r.ci[1] for r in res]))


def distances_over_t(panels: Sequence[dict[str, Any]], times: Sequence[float]):
    """One panel per side: mean cross-sample distance over t for the model, its spectrum-matched
    twin and the random-weight control (jackknife bands over samples), and the isotropic random level.

    ``panels``: dicts with ``title``, ``cross`` ``(n_t, n, n)``, ``matched`` ``(n_t, n, n)``, optional
    ``control`` ``(n_c, n, n)`` with ``control_times``, and ``random`` (a number, rad).
    """
    import matplotlib.pyplot as plt

    with style():
        fig, axes = plt.subplots(1, len(panels), figsize=(WIDTH, 3.2), squeeze=False)
        for ax, p in zip(axes[0], panels):
            for key, x, role, label, ls, mk in (
                ("cross", times, "trained", "trained", "-", "o"),
                ("matched", times, "matched", "same spectrum, random", ":", "^"),
                ("control", p.get("control_times"), "random_weights", "random weights", "--", "s"),
            ):
                if p.get(key) is not None:
                    _band(ax, x, *_pair_mean_ci(p[key]), role, label, linestyle=ls, marker=mk)
            ax.axhline(p["random"], color=COLOURS["reference"], ls="--", label="isotropic random")
            ax.set_title(p["title"])
            ax.set_ylabel("geodesic distance (rad)")
            _time_axis(ax, times)
            if ax is not axes[0][0]:
                ax.get_legend().remove()
        axes[0][0].legend(loc="lower left")
    return fig


def discrepancy_over_lags(
    lags: dict[float, dict[str, np.ndarray]],
    *,
    chance: float,
    sesoi: float,
    control: dict[float, dict[str, np.ndarray]] | None = None,
    anchor: float | None = None,
):
    """Timestep discrepancy against the gap: left, one sample's distance between its bases at ``anchor`` and
    ``anchor + dt`` (rad) beside the same-time distance to another sample (the reference scale) and the
    chance level (independent random subspaces); right, their ratio per sample with the smallest effect of
    interest. Means with 95% Student-t bands over samples.

    ``lags``/``control``: :func:`pullback_utils.claims.statistics.discrepancy_over_lags` of the trained
    network and of the random-weight control (any subset of the lags)."""
    import matplotlib.pyplot as plt

    with style(4.4):
        fig, (ax, ax_r) = plt.subplots(1, 2, figsize=(WIDTH, 4.4))
        for data, role, name, mk in (
            (lags, "trained", "trained", "o"),
            (control, "random_weights", "random weights", "s"),
        ):
            if not data:
                continue
            dts = sorted(data)
            for key, ls, label, a in (
                ("distance", "-", f"{name}: one sample, t vs t + dt", 1.0),
                ("reference", ":", f"{name}: another sample, same t", 0.6),
            ):
                _line(ax, [data[d][key] for d in dts], dts, role, label, ls=ls, marker=mk, alpha=a)
            _line(ax_r, [data[d]["ratio"] for d in dts], dts, role, "_" + name, marker=mk)
        ax.axhline(chance, color=COLOURS["reference"], ls="--", label="chance level (independent random subspaces)")
        ax.set_xlabel("gap dt (fraction of T)" + (f" from t = {anchor:g}" if anchor is not None else ""))
        ax.set_ylabel("geodesic distance (rad)")
        ax_r.axhline(sesoi, color="k", ls="--", lw=1, label=f"smallest effect of interest ({sesoi:g})")
        ax_r.axhline(1.0, color=COLOURS["reference"], ls=":", lw=1, label="ratio 1: as far as another sample")
        ax_r.set_xlabel("gap dt (fraction of T)")
        ax_r.set_ylabel("ratio to another sample")
        ax.set_ylim(bottom=0)
        ax_r.set_ylim(bottom=0)
        handles, labels = [sum(x, []) for x in zip(ax.get_legend_handles_labels(), ax_r.get_legend_handles_labels())]
        ax.get_legend().remove()
        fig.legend(handles, labels, loc="outside lower center", ncol=2, frameon=False, fontsize=MIN_FONT)
    return fig


def self_distance_heatmap(panels: Sequence[dict[str, Any]], times: Sequence[float]):
    """Mean distance between one sample's bases at every pair of times, one annotated heatmap per side.

    ``panels``: dicts with ``title``, ``self`` ``(n, n_t, n_t)`` and ``vmax`` (e.g. ``(pi/2) sqrt(k)``)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    with style(3.4):
        fig, axes = plt.subplots(1, len(panels), figsize=(WIDTH, 3.4), squeeze=False)
        for ax, p in zip(axes[0], panels):
            labels = [str(t) for t in times]
            sns.heatmap(
                np.asarray(p["self"]).mean(0),
                vmin=0,
                vmax=p["vmax"],
                cmap="magma",
                annot=True,
                fmt=".1f",
                annot_kws={"fontsize": MIN_FONT},
                square=True,
                xticklabels=labels,
                yticklabels=labels,
                cbar_kws={"label": "rad", "fraction": 0.046},
                ax=ax,
            )
            ax.set_xlabel("t' / T")
            ax.set_ylabel("t / T")
            ax.set_title(p["title"])
    return fig


def ablation_bars(panels: Sequence[dict[str, Any]]):
    """Bars of the state x time-input ablation per side (mean and Student-t interval over samples, the samples
    as points): ``panels`` with ``title``, ``time_only``, ``state_only``, ``total`` (each ``(n,)``) and
    ``floor`` (the noise floor, rad)."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    names = {"time_only": "time input\nonly", "state_only": "state\nonly", "total": "both"}
    with style(3.0):
        fig, axes = plt.subplots(1, len(panels), figsize=(WIDTH, 3.0), squeeze=False)
        for ax, p in zip(axes[0], panels):
            df = pd.concat([pd.DataFrame({"change": names[k], "d": np.asarray(p[k], dtype=float)}) for k in names])
            sns.barplot(
                df,
                x="change",
                y="d",
                hue="change",
                errorbar=_t_interval,
                capsize=0.2,
                legend=False,
                palette=sns.light_palette(COLOURS["trained"], 4)[1:],
                ax=ax,
            )
            sns.stripplot(df, x="change", y="d", color="0.2", size=3, alpha=0.6, jitter=0.15, ax=ax)
            ax.axhline(p["floor"], color=COLOURS["reference"], ls=":", label="noise floor")
            ax.set_xlabel("")
            ax.set_ylabel("geodesic distance (rad)")
            ax.set_title(p["title"])
            ax.legend()
    return fig


def similarity_scatter(similarity: np.ndarray, distances: np.ndarray, *, xlabel: str):
    """Distance between two prompts' bases (``(S, P, P)``, mean over states with 95% interval) against
    their similarity ``(P, P)``, one point per prompt pair, with a least-squares trend and its 95% bootstrap
    band over prompt pairs (seaborn's; descriptive, not the claim's test)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    iu = np.triu_indices(similarity.shape[0], 1)
    m, lo, hi = mean_ci(distances[:, iu[0], iu[1]], axis=0)
    x = similarity[iu] + np.random.default_rng(0).uniform(-0.08, 0.08, m.size)
    with style():
        fig, ax = plt.subplots(figsize=(WIDTH * 0.55, 3.2))
        ax.errorbar(x, m, yerr=[m - lo, hi - m], fmt="none", capsize=2, color=COLOURS["trained"], alpha=0.5)
        sns.regplot(
            x=x,
            y=m,
            ci=95,
            n_boot=1000,
            seed=0,
            color=COLOURS["trained"],
            scatter_kws={"s": 18},
            line_kws={"color": "black", "lw": 1.2},
            ax=ax,
        )
        ax.set_xlabel(xlabel)
        ax.set_ylabel("distance between the bases (rad)")
    return fig


def ladder_figure(
    curves: dict[str, np.ndarray],
    rung: dict[str, int],
    counts: dict[int, int],
    times: Sequence[float],
    dimension: dict[int, float] | None = None,
):
    """Left: each ladder model's mean cross-sample distance over t, coloured by rung. Right: the model's
    mean over t against its rung's factor count (one point per training seed), with the rung's estimated
    intrinsic dimension on a secondary top axis when given."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    rungs = sorted(set(rung.values()))
    label = {r: f"rung {r} ({counts[r]} factors)" for r in rungs}
    df = pd.DataFrame(
        [
            {"model": n, "t": t, "d": d, "rung": label[rung[n]], "factors": counts[rung[n]]}
            for n, c in curves.items()
            for t, d in zip(times, c)
        ]
    )
    palette = dict(zip(label.values(), sns.color_palette("viridis", len(rungs))))
    with style(3.3):
        fig, (a, b) = plt.subplots(1, 2, figsize=(WIDTH, 3.3))
        sns.lineplot(
            df,
            x="t",
            y="d",
            hue="rung",
            units="model",
            estimator=None,
            marker="o",
            markersize=4,
            alpha=0.8,
            palette=palette,
            hue_order=list(label.values()),
            ax=a,
        )
        a.legend(title=None, loc="best")
        a.set_ylabel("cross-sample distance (rad)")
        _time_axis(a, times)
        means = df.groupby(["model", "rung", "factors"], as_index=False)["d"].mean()
        sns.scatterplot(means, x="factors", y="d", hue="rung", palette=palette, legend=False, s=30, ax=b)
        b.set_xlabel("free factors of the training data")
        b.set_ylabel("mean over t (rad)")
        if dimension:
            top = b.secondary_xaxis("top")
            top.set_xticks([counts[r] for r in rungs], [f"{dimension[r]:.1f}" for r in rungs])
            top.set_xlabel("estimated intrinsic dimension (TwoNN)")
    return fig


def truth_energy_over_t(panels: Sequence[dict[str, Any]], times: Sequence[float]):
    """Energy fractions in the pushed tangent span over t, one panel per model (log scale).

    ``panels``: dicts with ``title``; ``basis``, ``matched``, ``isotropic`` ``(n_t, n)``; ``pca``,
    ``denoiser``, ``control`` ``(n,)`` and ``best_t`` (where the held-out-time values are drawn).
    Means with 95% intervals over images; lower ends are clipped for the log axis."""
    import matplotlib.pyplot as plt

    def bars(ax, x, v, **kw):
        m, lo, hi = mean_ci(np.asarray(v), axis=1)
        lo = np.maximum(lo, 0.5 * np.minimum(m, np.min(m)))
        ax.errorbar(x, m, yerr=[m - lo, hi - m], capsize=3, **kw)

    with style(3.6):
        fig, axes = plt.subplots(1, len(panels), figsize=(WIDTH, 3.6), squeeze=False, sharey=True)
        for ax, p in zip(axes[0], panels):
            bars(ax, times, p["basis"], fmt="o-", color=COLOURS["trained"], label="local basis")
            bars(ax, times, p["matched"], fmt="^:", color=COLOURS["matched"], label="same spectrum, random")
            ax.plot(times, np.asarray(p["isotropic"]).mean(1), "--", color=COLOURS["reference"], label="isotropic r/D")
            m, lo, hi = mean_ci(np.asarray(p["pca"])[None], axis=1)
            ax.axhspan(max(float(lo[0]), 1e-6), min(float(hi[0]), 1.0), color="#56b4e9", alpha=0.25)
            ax.axhline(float(m[0]), color="#56b4e9", ls="-.", label="local PCA (clean span)")
            step = 0.04 * (max(times) - min(times) or 1.0)
            bars(
                ax,
                [p["best_t"] + step],
                np.asarray(p["denoiser"])[None],
                fmt="D",
                color="#cc78bc",
                label="denoiser Jacobian",
            )
            bars(
                ax,
                [p["best_t"] - step],
                np.asarray(p["control"])[None],
                fmt="s",
                color=COLOURS["random_weights"],
                label="random weights",
            )
            ax.set_yscale("log")
            ax.set_ylim(top=1.0)
            ax.set_title(p["title"])
            _time_axis(ax, times)
        axes[0][0].set_ylabel("energy fraction in\npushed tangent span")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=3, frameon=False)
    return fig


def truth_directions(
    image: Any, clean: Any, pushed: Any, basis: Any, *, factor_names: Sequence[str], energies: Sequence[float], t: float
):
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

    rows = [
        ("tangents", [torch.as_tensor(image).float()] + list(scaled(clean)), ["image"] + list(factor_names)),
        (f"pushed\nt = {t}", [None] + list(scaled(pushed)), [""] + list(factor_names)),
        (
            f"basis\nt = {t}",
            [None] + list(scaled(basis)),
            [""] + [f"v{i + 1}: {e:.2f}" for i, e in enumerate(energies)],
        ),
    ]
    cols = max(len(r[1]) for r in rows)
    cell = min(0.8, (WIDTH - 0.9) / cols)
    with style():
        fig, axes = plt.subplots(3, cols, figsize=(cell * cols + 0.9, cell * 3 + 0.9), squeeze=False, layout="tight")
        for r, (label, ims, names) in enumerate(rows):
            for c in range(cols):
                ax = axes[r, c]
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                if c < len(ims) and ims[c] is not None:
                    ax.imshow(rgb(ims[c]), interpolation="nearest")
                    ax.set_title(names[c], fontsize=MIN_FONT)
                else:
                    ax.set_frame_on(False)
            axes[r, 0].set_ylabel(label, fontsize=MIN_FONT, rotation=0, ha="right", va="center")
    return fig
