"""Hypothesis tests behind the book's verdicts, and the verdict rule.

Every claim is decided by a test of its null hypothesis at the sample size it is used at; the test
suite (``tests/analysis/test_inference.py``) simulates each test's false-positive rate under a true null and its
power at a stated effect, at the book's default sizes. The tests:

- :func:`sign_flip_test` -- one value per independent unit (a sample, a prompt-state): under the null the
  values are symmetric about ``null``, so flipping the sign of any subset of ``value - null`` is
  equally likely. Exact enumeration of all ``2^n`` flips for ``n <= exact_max`` units, else a Monte
  Carlo draw with the ``(1 + hits) / (1 + draws)`` p-value, which is valid at every draw count.
- :func:`pair_u_test` -- a statistic of unit *pairs* (e.g. the mean cross-sample distance over sample
  pairs): pairs share units, so the unit of resampling is the unit, not the pair. The mean over
  pairs is a U-statistic; its standard error is the delete-one-unit jackknife and the reference is
  Student's t with ``n - 1`` degrees of freedom.
- :func:`permutation_trend_test` -- a trend of one value per unit over a known covariate (the ladder's
  factor count, with several training seeds per rung): Spearman's rho against all relabellings of the
  covariate (exact for few units, Monte Carlo otherwise). The design's smallest attainable p is
  reported, so a design that cannot reach significance is flagged before it runs.
- :func:`nested_trend_test` -- the same trend when units are nested in groups that share everything
  but noise (training seeds within a dataset rung): the group is the unit, its value the mean over its
  replicates, and the rung labels are permuted exactly (``g!`` labellings for ``g`` groups).
- :func:`mantel_test` -- association between distance matrices over the same items (prompts), with one
  permutation of the items shared by every stratum (prompt-state), so item effects that repeat across
  strata are kept under the null. Its smallest attainable p counts *distinct* labellings: item
  permutations that leave the similarity matrix unchanged (:func:`automorphisms`; a 2x2x2 attribute
  design has 48) give the same statistic.
- :func:`tost_test` -- equivalence (two one-sided sign-flip tests) of a per-unit mean to within a
  smallest effect of interest fixed in advance.
- :func:`holm` -- Holm's step-down adjustment across the primary claims.

Verdict rule (fixed before any result is seen), from the two-sided p-value ``p`` of the claim's test
(adjusted by Holm across the primary claims), the estimate's side, and the design:

* **reproduced** -- ``p < alpha`` and the estimate lies on the claimed side of the null;
* **not reproduced** -- ``p < alpha`` on the other side (a significant effect against the claim);
* **underpowered** -- the design's smallest attainable p is ``>= alpha`` (too few units for its test), or
  the result is not significant and the design's simulated power at the effect seen is below
  :data:`POWER_TARGET` (a record that carries ``power``);
* **inconclusive** -- otherwise.

``alpha = 0.05`` two-sided is the old rule's 95% interval excluding the null (2.5% per side).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as _sps

from pullback_utils._validate import check_int, is_int

__all__ = [
    "REPRODUCED",
    "NOT_REPRODUCED",
    "INCONCLUSIVE",
    "UNDERPOWERED",
    "ALPHA",
    "POWER_TARGET",
    "PAIR_MIN_UNITS",
    "TestResult",
    "sign_flip_test",
    "pair_u_test",
    "permutation_trend_test",
    "mantel_test",
    "holm",
    "decide",
    "direction_sign",
    "required_units",
    "SIGN_FLIP_EXACT_CAP",
    "PERMUTATION_EXACT_CAP",
    "nested_trend_test",
    "automorphisms",
    "tost_test",
]

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
UNDERPOWERED = "underpowered"
ALPHA = 0.05
#: A non-significant design whose simulated power at the effect seen is below this is "underpowered".
POWER_TARGET = 0.8
#: Smallest number of units at which :func:`pair_u_test` decides (its calibration is simulated from here).
PAIR_MIN_UNITS = 10
_GREATER = {"greater", "increase", "increasing", "positive", "+", ">"}
_LESS = {"less", "decrease", "decreasing", "negative", "-", "<"}


def direction_sign(direction: Any) -> int:
    """+1 for ``"greater"`` (and aliases, or ``1``), -1 for ``"less"`` (or ``-1``)."""
    if isinstance(direction, str):
        d = direction.strip().lower()
        if d in _GREATER:
            return 1
        if d in _LESS:
            return -1
    elif is_int(direction) and direction in (1, -1):
        return int(direction)
    raise ValueError(f"direction must be 'greater' or 'less' (or +1/-1), got {direction!r}")


@dataclass
class TestResult:
    """Outcome of a test: the estimate, its 95% interval, one- and two-sided p-values, and the design.

    ``p_greater``/``p_less`` are the one-sided p-values of "statistic > null"/"< null"; ``p_value`` the
    two-sided ``min(1, 2 min(p_greater, p_less))``; ``min_p`` the smallest two-sided p the design can
    attain (e.g. ``2 / 2^n`` for ``n`` sign flips); ``n_units`` and ``unit`` the independent units;
    ``test`` a short name; ``extra`` further numbers.
    """

    estimate: float
    ci: tuple[float, float]
    p_greater: float
    p_less: float
    n_units: int
    unit: str
    test: str
    min_p: float
    null: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def p_value(self) -> float:
        return float(min(1.0, 2.0 * min(self.p_greater, self.p_less)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate": self.estimate,
            "ci": list(self.ci),
            "p_value": self.p_value,
            "p_greater": self.p_greater,
            "p_less": self.p_less,
            "n_units": self.n_units,
            "unit": self.unit,
            "test": self.test,
            "min_p": self.min_p,
            "null": self.null,
            **self.extra,
        }


def _finite_vector(values: Any, name: str, min_n: int) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one value per unit (1-D), got shape {a.shape}")
    if not np.isfinite(a).all():
        bad = np.flatnonzero(~np.isfinite(a))
        raise ValueError(
            f"{name} has non-finite entries at units {bad.tolist()[:10]} (NaN or inf); a claim cannot be tested on them"
        )
    if a.size < min_n:
        raise ValueError(f"{name} needs at least {min_n} units, got {a.size}")
    return a


#: Largest ``exact_max`` of :func:`sign_flip_test`: 2^20 sign patterns of 20 units are 168 MB of float64;
#: beyond, Monte Carlo draws give the p-value to within its simulation error at a fraction of the cost.
SIGN_FLIP_EXACT_CAP = 20
#: Largest ``exact_max`` of the permutation tests (:func:`permutation_trend_test`, :func:`mantel_test`):
#: 9! = 362880 permutations (tens of MB, seconds).
PERMUTATION_EXACT_CAP = 362880


def _check_exact_max(exact_max: Any, cap: int, what: str) -> int:
    """``exact_max`` as an int in ``0..cap`` (before any enumeration)."""
    v = check_int(exact_max, "exact_max", 0)
    if v > cap:
        raise ValueError(
            f"exact_max={v} would enumerate up to {what}; at most {cap} is allowed (Monte Carlo "
            f"with n_draws is used beyond it)"
        )
    return v


def _flip_signs(n: int, exact_max: int, n_draws: int, seed: int) -> tuple[np.ndarray, bool]:
    """(M, n) sign patterns: all 2^n when n <= exact_max, else n_draws random ones."""
    if n <= exact_max:
        return np.array(list(itertools.product((1.0, -1.0), repeat=n))), True
    rng = np.random.default_rng(seed)
    return rng.choice((1.0, -1.0), size=(n_draws, n)), False


def _p_from(stat: float, null_stats: np.ndarray, exact: bool) -> tuple[float, float]:
    """One-sided p-values (greater, less) of ``stat`` against permutation statistics (ties count)."""
    tol = 1e-12 * max(1.0, abs(stat))
    ge = int(np.sum(null_stats >= stat - tol))
    le = int(np.sum(null_stats <= stat + tol))
    m = null_stats.size
    if exact:  # the identity is among the enumerated patterns
        return ge / m, le / m
    return (1 + ge) / (1 + m), (1 + le) / (1 + m)


def sign_flip_test(
    values: Any, *, null: float = 0.0, unit: str = "sample", exact_max: int = 16, n_draws: int = 20000, seed: int = 0
) -> TestResult:
    """Sign-flip test of ``mean(values) = null`` with one value per independent unit.

    Args:
        values: ``(n,)`` one value per unit (e.g. a per-sample difference), ``n >= 2``, finite.
        null: the no-effect value.
        unit: what a unit is (for the record).
        exact_max: enumerate all ``2^n`` sign patterns up to this ``n`` (an int in 0..20,
            :data:`SIGN_FLIP_EXACT_CAP`); Monte Carlo beyond.
        n_draws, seed: Monte Carlo draws and their seed.

    Returns:
        :class:`TestResult`: the mean, a 95% Student-t interval, one-sided p-values of the mean.
    """
    exact_max = _check_exact_max(
        exact_max,
        SIGN_FLIP_EXACT_CAP,
        f"2^{exact_max} sign patterns"
        if isinstance(exact_max, int) and exact_max < 10**4
        else "that many sign patterns",
    )
    d = _finite_vector(values, "values", 2) - float(null)
    n = d.size
    signs, exact = _flip_signs(n, exact_max, check_int(n_draws, "n_draws", 99), seed)
    stat = float(d.mean())
    null_stats = signs @ d / n
    pg, pl = _p_from(stat, null_stats, exact)
    se = float(d.std(ddof=1) / math.sqrt(n))
    q = float(_sps.t.ppf(0.975, n - 1))
    est = stat + float(null)
    min_p = min(1.0, 2.0 / 2**n)
    return TestResult(
        est,
        (est - q * se, est + q * se),
        pg,
        pl,
        n,
        unit,
        "sign-flip" + (" (exact)" if exact else f" ({signs.shape[0]} draws)"),
        min_p=min_p,
        null=float(null),
        extra=_needed(min_p, lambda m: 2.0 / 2**m),
    )


def pair_u_test(pair_values: Any, *, null: float = 0.0, unit: str = "sample") -> TestResult:
    """Test of ``mean over unit pairs = null`` for a symmetric ``(n, n)`` matrix of pair values.

    The estimate is the mean over pairs ``i < j``; the standard error is the delete-one-unit jackknife
    (each unit removed with all its pairs), and the reference distribution Student's t with ``n - 1``
    degrees of freedom. Needs ``n >= 4``; its false-positive rate is checked by simulation from
    :data:`PAIR_MIN_UNITS` units on, so a smaller design is reported underpowered (``min_p = 1``).
    """
    m = np.asarray(pair_values, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"pair_values must be a square (n, n) matrix, got shape {m.shape}")
    n = m.shape[0]
    if n < 4:
        raise ValueError(f"pair_values needs at least 4 units for a jackknife test, got {n}")
    iu = np.triu_indices(n, 1)
    vals = m[iu]
    if not np.isfinite(vals).all():
        raise ValueError("pair_values has non-finite entries (NaN or inf); a claim cannot be tested on them")
    est = float(vals.mean())
    off = m.copy()
    np.fill_diagonal(off, 0.0)
    row = off.sum(axis=1)
    total = vals.sum()
    n_pairs_minus = (n - 1) * (n - 2) / 2
    loo = (total - row) / n_pairs_minus  # mean without unit i
    se = float(math.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2)))
    df = n - 1
    if se == 0.0:
        pg = 0.0 if est > null else 1.0
        pl = 0.0 if est < null else 1.0
    else:
        tstat = (est - null) / se
        pg, pl = float(_sps.t.sf(tstat, df)), float(_sps.t.cdf(tstat, df))
    q = float(_sps.t.ppf(0.975, df))
    extra = {"se": se, "n_pairs": int(vals.size)}
    if n < PAIR_MIN_UNITS:
        extra.update(
            {"n_needed": PAIR_MIN_UNITS, "n_needed_of": "units (the smallest size whose calibration is simulated)"}
        )
    return TestResult(
        est,
        (est - q * se, est + q * se),
        pg,
        pl,
        n,
        unit,
        "jackknife t over units",
        min_p=0.0 if n >= PAIR_MIN_UNITS else 1.0,
        null=float(null),
        extra=extra,
    )


def _rank(a: np.ndarray) -> np.ndarray:
    return _sps.rankdata(a, axis=-1)


def _spearman_rows(x_ranks: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rho of ``y`` against every row of ``x_ranks`` (already ranked)."""
    ry = _rank(y)
    ry = ry - ry.mean()
    xr = x_ranks - x_ranks.mean(axis=-1, keepdims=True)
    den = np.sqrt((xr**2).sum(-1) * (ry**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return (xr @ ry) / den


def _distinct_labellings(labels: np.ndarray) -> int:
    _, counts = np.unique(labels, return_counts=True)
    return math.factorial(len(labels)) // math.prod(math.factorial(int(c)) for c in counts)


def permutation_trend_test(
    covariate: Any, values: Any, *, unit: str = "model", n_draws: int = 20000, exact_max: int = 40320, seed: int = 0
) -> TestResult:
    """Monotone trend of one value per unit in a covariate: Spearman rho against relabellings.

    Args:
        covariate: ``(n,)`` the known level of each unit (e.g. a rung's factor count; ties allowed:
            several seeds per rung).
        values: ``(n,)`` the measurement of each unit.
        exact_max: enumerate every distinct relabelling when there are at most this many.

    Returns:
        :class:`TestResult` with the estimate rho, a 95% interval from a bootstrap over units, the
        one-sided p-values, and ``min_p`` the smallest attainable two-sided p of the design
        (``2 / number of distinct labellings``).
    """
    exact_max = _check_exact_max(exact_max, PERMUTATION_EXACT_CAP, "that many relabellings")
    x = _finite_vector(covariate, "covariate", 3)
    y = _finite_vector(values, "values", 3)
    if x.size != y.size:
        raise ValueError(f"covariate and values must have one entry per unit, got {x.size} and {y.size}")
    if np.unique(x).size < 2:
        raise ValueError("covariate must take at least 2 distinct values for a trend")
    n = x.size
    n_lab = _distinct_labellings(x)
    rx = _rank(x)
    stat = float(_spearman_rows(rx[None], y)[0])
    if n_lab <= exact_max and math.factorial(n) <= 10 * exact_max:
        perms = np.array(sorted(set(itertools.permutations(rx.tolist()))))
        null_stats, exact = _spearman_rows(perms, y), True
    else:
        rng = np.random.default_rng(seed)
        perms = np.stack([rng.permutation(rx) for _ in range(check_int(n_draws, "n_draws", 99))])
        null_stats, exact = _spearman_rows(perms, y), False
    pg, pl = _p_from(stat, null_stats, exact)
    idx = np.random.default_rng(seed + 1).integers(0, n, (2000, n))
    bx, by = x[idx], y[idx]
    ok = (bx.max(1) > bx.min(1)) & (by.max(1) > by.min(1))
    boots = np.empty(0)
    if ok.any():
        rbx, rby = _rank(bx[ok]), _rank(by[ok])
        rbx, rby = rbx - rbx.mean(1, keepdims=True), rby - rby.mean(1, keepdims=True)
        boots = (rbx * rby).sum(1) / np.sqrt((rbx**2).sum(1) * (rby**2).sum(1))
    lo, hi = np.quantile(boots, [0.025, 0.975]) if boots.size else (math.nan, math.nan)
    reps = int(np.unique(x, return_counts=True)[1].max())
    extra = {"distinct_labellings": int(n_lab), "levels": int(np.unique(x).size), "replicates": reps}
    extra.update(
        _needed(
            min(1.0, 2.0 / n_lab),
            lambda lv: 2.0 * math.factorial(reps) ** lv / math.factorial(lv * reps),
            unit_word=f"levels of {reps} unit(s) each",
        )
    )
    return TestResult(
        stat,
        (float(lo), float(hi)),
        pg,
        pl,
        n,
        unit,
        "permutation of the covariate" + (" (exact)" if exact else f" ({len(null_stats)} draws)"),
        min_p=min(1.0, 2.0 / n_lab),
        extra=extra,
    )


def mantel_test(
    distances: Any,
    similarity: Any,
    *,
    unit: str = "prompt-state",
    n_draws: int = 20000,
    exact_max: int = 40320,
    seed: int = 0,
) -> TestResult:
    """Stratified Mantel test: mean over strata of Spearman rho(similarity, distance) over item pairs.

    Args:
        distances: ``(S, P, P)`` symmetric distance matrices over the same ``P`` items (prompts) in each
            of ``S`` strata (prompt-states), or ``(P, P)`` for one stratum.
        similarity: ``(P, P)`` symmetric similarity of the items (fixed across strata).
        exact_max: enumerate all ``P!`` item permutations up to this many, else Monte Carlo.

    One permutation of the items is applied to every stratum at once (items are the exchangeable units
    under the null, and an item's idiosyncrasy repeats across strata). The estimate is the mean rho;
    its 95% interval a bootstrap over strata. ``n_units`` is the number of strata; ``extra`` holds the
    number of items and the per-stratum rho.
    """
    exact_max = _check_exact_max(exact_max, PERMUTATION_EXACT_CAP, "that many permutations")
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim == 2:
        d = d[None]
    s = np.asarray(similarity, dtype=np.float64)
    if d.ndim != 3 or d.shape[1] != d.shape[2] or s.shape != d.shape[1:]:
        raise ValueError(
            f"distances must be (S, P, P) and similarity (P, P) over the same P items, got {d.shape} and {s.shape}"
        )
    n_s, p = d.shape[0], d.shape[1]
    if p < 4:
        raise ValueError(f"a Mantel test needs at least 4 items, got {p}")
    iu = np.triu_indices(p, 1)
    if not (np.isfinite(d[:, iu[0], iu[1]]).all() and np.isfinite(s[iu]).all()):
        raise ValueError("distances or similarity have non-finite entries (NaN or inf)")
    rs = _rank(s[iu])
    rs = rs - rs.mean()
    ranks = np.zeros_like(d)
    ranks[:, iu[0], iu[1]] = _rank(d[:, iu[0], iu[1]])  # within-stratum ranks of the pair distances
    ranks = ranks + ranks.transpose(0, 2, 1)
    centre = ranks[:, iu[0], iu[1]].mean(1)  # invariant under item permutations, as is the spread
    den = np.sqrt(((ranks[:, iu[0], iu[1]] - centre[:, None]) ** 2).sum(1) * (rs**2).sum())
    if np.any(den == 0):
        raise ValueError("a stratum's distances are constant: the Mantel correlation is undefined")

    def stats_of(perms: np.ndarray) -> np.ndarray:  # (M, P) -> (M,) mean rho over strata
        out = []
        for c in range(0, perms.shape[0], 4096):
            q = perms[c : c + 4096]
            g = ranks[:, q[:, iu[0]], q[:, iu[1]]]  # (S, M, pairs)
            out.append((((g - centre[:, None, None]) @ rs) / den[:, None]).mean(0))
        return np.concatenate(out)

    per = ((ranks[:, iu[0], iu[1]] - centre[:, None]) @ rs) / den
    stat = float(per.mean())
    if math.factorial(p) <= exact_max:
        perms, exact = np.array(list(itertools.permutations(range(p)))), True
    else:
        rng = np.random.default_rng(seed)
        perms = np.stack([rng.permutation(p) for _ in range(check_int(n_draws, "n_draws", 99))])
        exact = False
    null_stats = stats_of(perms)
    pg, pl = _p_from(stat, null_stats, exact)
    rng = np.random.default_rng(seed + 1)
    boots = [float(per[rng.integers(0, n_s, n_s)].mean()) for _ in range(2000)] if n_s > 1 else [stat]
    lo, hi = np.quantile(boots, [0.025, 0.975])
    n_aut = automorphisms(s)
    n_lab = math.factorial(p) // n_aut  # permutations in one coset of the symmetry group give one statistic
    min_p = min(1.0, 2.0 / n_lab if exact else max(2.0 / n_lab, 2.0 / (1 + len(perms))))
    return TestResult(
        stat,
        (float(lo), float(hi)),
        pg,
        pl,
        n_s,
        unit,
        "Mantel, items permuted jointly" + (" (exact)" if exact else f" ({len(perms)} draws)"),
        min_p=min_p,
        extra={
            "n_items": int(p),
            "per_stratum": per.tolist(),
            "null_mean": float(null_stats.mean()),
            "null_95": [float(q) for q in np.quantile(null_stats, [0.025, 0.975])],
            "symmetries": int(n_aut),
            "distinct_labellings": int(n_lab),
            **_needed(min_p, lambda q: 2.0 / math.factorial(q), unit_word="items"),
        },
    )


def automorphisms(similarity: Any, *, limit: int = 10_000_000) -> int:
    """Number of item permutations ``q`` with ``similarity[q][:, q] == similarity`` (the matrix's symmetries).

    Backtracking over items with pruning on the already-placed pairs; exact for the prompt designs of
    the book (8 to 16 items). ``limit`` caps the count (a safety net for highly symmetric large inputs).
    """
    s = np.asarray(similarity, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"similarity must be a square (P, P) matrix, got shape {s.shape}")
    p = s.shape[0]
    img = [-1] * p
    used = [False] * p
    count = 0

    def place(i: int) -> None:
        nonlocal count
        if count >= limit:
            return
        if i == p:
            count += 1
            return
        for c in range(p):
            if used[c] or s[c, c] != s[i, i] or any(s[img[j], c] != s[j, i] for j in range(i)):
                continue
            img[i], used[c] = c, True
            place(i + 1)
            used[c] = False
        img[i] = -1

    place(0)
    return max(count, 1)


def nested_trend_test(
    covariate: Any, groups: Any, values: Any, *, unit: str = "rung", n_boot: int = 2000, seed: int = 0
) -> TestResult:
    """Monotone trend over groups with replicates nested in them: Spearman rho of the group means.

    The replicates of one group (e.g. the training seeds of one ladder rung) share the group's data
    distribution, so they are not independent units of the trend: the group is. Each group's value is
    the mean of its replicates; the test enumerates all ``g!`` relabellings of the ``g`` groups (exact;
    the same null as permuting the rung labels while keeping each rung's seeds together).

    Args:
        covariate: ``(n,)`` each replicate's level (constant within a group; one level per group).
        groups: ``(n,)`` each replicate's group label.
        values: ``(n,)`` each replicate's measurement.
        n_boot, seed: the 95% interval resamples replicates within each group (seed noise only; the
            between-group variation is what the permutation null is about).

    Returns:
        :class:`TestResult` over the ``g`` groups: rho, one-sided p-values, ``min_p = 2 / g!``, and in
        ``extra`` the group means, replicates per group and the number of labellings.
    """
    x = _finite_vector(covariate, "covariate", 2)
    y = _finite_vector(values, "values", 2)
    lab = np.asarray(groups)
    if lab.shape != x.shape or y.shape != x.shape:
        raise ValueError(
            f"covariate, groups and values must have one entry per replicate, got {x.shape}, {lab.shape} and {y.shape}"
        )
    names = list(dict.fromkeys(lab.tolist()))
    if len(names) < 2:
        raise ValueError(f"groups must hold at least 2 groups for a trend, got {names}")
    gx, gy, reps = [], [], []
    for g in names:
        sel = lab == g
        if np.unique(x[sel]).size != 1:
            raise ValueError(
                f"group {g!r} has replicates at different covariate levels {sorted(set(x[sel]))}: "
                "each group must sit at one level"
            )
        gx.append(float(x[sel][0]))
        gy.append(float(y[sel].mean()))
        reps.append(int(sel.sum()))
    gx_a, gy_a = np.array(gx), np.array(gy)
    if np.unique(gx_a).size != gx_a.size:
        raise ValueError(f"two groups share a covariate level ({gx}): give each level one group")
    g = len(names)
    n_lab = math.factorial(g)
    rx = _rank(gx_a)
    stat = float(_spearman_rows(rx[None], gy_a)[0])
    perms = np.array(list(itertools.permutations(rx.tolist())))
    pg, pl = _p_from(stat, _spearman_rows(perms, gy_a), True)
    rng = np.random.default_rng(seed)
    idx = [np.flatnonzero(lab == nm) for nm in names]
    boots = []
    for _ in range(check_int(n_boot, "n_boot", 1)):
        means = np.array([y[rng.choice(ix, ix.size)].mean() for ix in idx])
        if means.max() > means.min():
            boots.append(float(_spearman_rows(rx[None], means)[0]))
    lo, hi = np.quantile(boots, [0.025, 0.975]) if boots else (stat, stat)
    min_p = min(1.0, 2.0 / n_lab)
    extra = {
        "group_means": dict(zip(map(str, names), gy)),
        "replicates": reps,
        "distinct_labellings": n_lab,
        "levels": g,
        "n_replicates": int(x.size),
        **_needed(min_p, lambda m: 2.0 / math.factorial(m), unit_word="groups (each its own level)"),
    }
    return TestResult(
        stat,
        (float(lo), float(hi)),
        pg,
        pl,
        g,
        unit,
        f"permutation of the {unit} labels, replicates nested (exact)",
        min_p=min_p,
        extra=extra,
    )


def tost_test(
    values: Any, margin: float, *, unit: str = "sample", exact_max: int = 16, n_draws: int = 20000, seed: int = 0
) -> TestResult:
    """Equivalence of a per-unit mean to 0 within ``(-margin, margin)``: two one-sided sign-flip tests.

    ``p_value`` here is the TOST p: the larger of the one-sided p-values of ``mean > -margin`` and
    ``mean < margin``; equivalence is shown when it is below alpha. ``p_greater``/``p_less`` hold those
    two one-sided p-values (the ``TestResult`` fields keep their meaning only in ``extra``), so the
    result is read with :attr:`TestResult.extra` ``["p_tost"]``, never with :func:`decide`.

    Args:
        values: ``(n,)`` one value per unit.
        margin: the smallest effect of interest (> 0), fixed before the data are seen.
    """
    m = float(margin)
    if not math.isfinite(m) or m <= 0:
        raise ValueError(f"margin must be a positive number (the smallest effect of interest), got {margin!r}")
    d = _finite_vector(values, "values", 2)
    lower = sign_flip_test(d, null=-m, unit=unit, exact_max=exact_max, n_draws=n_draws, seed=seed)
    upper = sign_flip_test(d, null=m, unit=unit, exact_max=exact_max, n_draws=n_draws, seed=seed)
    p_tost = max(lower.p_greater, upper.p_less)
    est = float(d.mean())
    q = float(_sps.t.ppf(0.95, d.size - 1))  # the 90% interval is the one that matches a TOST at 0.05
    se = float(d.std(ddof=1) / math.sqrt(d.size))
    min_p = 1.0 / 2**d.size if d.size <= exact_max else 1.0 / (1 + n_draws)
    return TestResult(
        est,
        (est - q * se, est + q * se),
        lower.p_greater,
        upper.p_less,
        d.size,
        unit,
        "TOST, two one-sided sign-flip tests",
        min_p=min_p,
        extra={
            "p_tost": float(p_tost),
            "margin": m,
            "ci_level": 0.90,
            "equivalent": bool(p_tost < ALPHA and min_p < ALPHA),
        },
    )


def _needed(min_p: float, min_p_of_n: Callable[[int], float], unit_word: str = "units") -> dict[str, Any]:
    """``{"n_needed": ..., "n_needed_of": ...}`` when the design's ``min_p`` cannot reach ``ALPHA``."""
    if min_p < ALPHA:
        return {}
    return {"n_needed": required_units(min_p_of_n), "n_needed_of": unit_word}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given; each in [0, 1])."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or not np.all((p >= 0) & (p <= 1)):
        raise ValueError(f"p_values must be a list of numbers in [0, 1], got {list(p_values)}")
    m = p.size
    order = np.argsort(p, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj.tolist()


def decide(
    p_value: float,
    estimate: float,
    direction: Any,
    *,
    null: float = 0.0,
    min_p: float = 0.0,
    alpha: float = ALPHA,
    power: float | None = None,
) -> str:
    """The verdict (module doc) from a two-sided p-value, the estimate's side and the design's ``min_p``.

    ``power``: where a record carries the design's simulated power at the effect seen (dataset
    complexity), a non-significant result of a design with power below :data:`POWER_TARGET` is
    *underpowered* rather than *inconclusive*: the design could not be expected to detect the effect."""
    sign = direction_sign(direction)
    for val, nm in ((p_value, "p_value"), (estimate, "estimate"), (null, "null"), (min_p, "min_p")):
        if not isinstance(val, (int, float, np.floating, np.integer)) or not math.isfinite(float(val)):
            raise ValueError(f"{nm} must be a finite number, got {val!r}")
    if power is not None and not (isinstance(power, (int, float, np.floating)) and 0 <= float(power) <= 1):
        raise ValueError(f"power must be a number in [0, 1] or None, got {power!r}")
    if float(min_p) >= alpha:
        return UNDERPOWERED
    if float(p_value) < alpha and float(estimate) != float(null):
        return REPRODUCED if (float(estimate) - float(null)) * sign > 0 else NOT_REPRODUCED
    if power is not None and float(power) < POWER_TARGET:
        return UNDERPOWERED
    return INCONCLUSIVE


def required_units(
    min_p_of_n: Callable[[int], float], *, alpha: float = ALPHA, start: int = 2, stop: int = 10_000
) -> int | None:
    """Smallest ``n >= start`` whose design can attain a two-sided p below ``alpha`` (None if none)."""
    for n in range(start, stop):
        if min_p_of_n(n) < alpha:
            return n
    return None
