"""Power of the dataset-complexity design (rungs x training seeds) for the nested rung test, by simulation.

    python benchmarks/complexity_power.py --metrics book/generated/dataset_complexity/metrics.json
    python benchmarks/complexity_power.py --rho 0.9            # effect from a rung-mean rho alone
    python benchmarks/complexity_power.py --slope 0.01 --tau 0.005 --sigma 0.01

The claim's test ranks the rung means of the model spreads against the rungs' factor counts and
enumerates every rung labelling (:func:`pullback_utils.analysis.inference.nested_trend_test`). This prints, for
each design (number of rungs x seeds per rung), the share of simulated ladders that reach p < 0.05 on
the claimed side, and the cheapest design with power >= 0.8.

The effect (``pullback_utils.claims.power``): ``spread = slope * rung + tau * eta_rung + sigma * eps``.
``--metrics`` fits it to the per-model spreads a chapter run stored in its record (``spread``);
``--rho`` works in units of the rung means' total scatter (``tau^2 + sigma^2 / 3 = 1``): the slope per
rung step is chosen so that the median rung-mean rho of the current 5 x 3 design equals ``rho``, and
``--tau-share`` splits the scatter between the rung level (shared by a rung's seeds; more seeds do not
reduce it) and the seeds.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from pullback_utils.claims import power as cp
from pullback_utils.claims import read_metrics


def effect_from_metrics(path: str) -> cp.Effect:
    rec = read_metrics(path)["claims"]["dataset_complexity"]
    spread = rec["spread"]
    from pullback_utils.zoo import ladder, registry

    names = list(spread)
    rungs = [registry.MODELS[n]["rung"] for n in names]
    return cp.fit_effect([ladder.n_factors(r) for r in rungs], rungs, [spread[n] for n in names])


def effect_from_rho(rho: float, tau_share: float, rungs: int = 5, seeds: int = 3, sims: int = 4000) -> cp.Effect:
    """Slope (in units of the total rung-mean scatter 1) whose median rung-mean Spearman rho is ``rho``."""
    tau = math.sqrt(tau_share)
    sigma = math.sqrt((1 - tau_share) * seeds)  # so that tau^2 + sigma^2 / seeds = 1
    rng = np.random.default_rng(0)
    r = np.arange(1, rungs + 1, dtype=float)
    noise = rng.standard_normal((sims, rungs))
    lo, hi = 0.0, 20.0
    for _ in range(50):
        mid = (lo + hi) / 2
        m = mid * r + noise
        ranks = np.argsort(np.argsort(m, 1), 1) + 1.0
        med = np.median(1 - 6 * ((ranks - r) ** 2).sum(1) / (rungs * (rungs**2 - 1)))
        lo, hi = (mid, hi) if med < rho else (lo, mid)
    return cp.Effect((lo + hi) / 2, tau, sigma)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--metrics", help="dataset_complexity metrics.json with per-model spreads")
    p.add_argument("--rho", type=float, help="median rung-mean Spearman rho of the 5 x 3 design")
    p.add_argument(
        "--tau-share", type=float, default=0.5, help="with --rho: share of the rung-mean scatter at the rung level"
    )
    p.add_argument("--slope", type=float)
    p.add_argument("--tau", type=float)
    p.add_argument("--sigma", type=float)
    p.add_argument("--sims", type=int, default=4000)
    p.add_argument("--rungs", type=int, nargs="+", default=[5, 6, 7, 8, 10, 12, 15])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 5])
    a = p.parse_args()
    if a.metrics:
        eff, source = effect_from_metrics(a.metrics), f"fitted to {a.metrics}"
    elif a.rho is not None:
        if not -1 < a.rho < 1 or not 0 <= a.tau_share <= 1:
            p.error("--rho must lie in (-1, 1) and --tau-share in [0, 1]")
        eff, source = (
            effect_from_rho(a.rho, a.tau_share),
            f"median rung-mean rho {a.rho} at 5 x 3, tau share {a.tau_share}",
        )
    elif None not in (a.slope, a.tau, a.sigma):
        eff, source = cp.Effect(a.slope, a.tau, a.sigma), "given"
    else:
        p.error("give --metrics, --rho, or all of --slope --tau --sigma")
    print(f"effect ({source}): slope {eff.slope:.4g} per rung, tau {eff.tau:.4g}, sigma {eff.sigma:.4g}")
    print("| rungs | critical rho | " + " | ".join(f"{s} seed(s)" for s in a.seeds) + " |")
    print("|---|---|" + "---|" * len(a.seeds))
    for g in a.rungs:
        pw = [cp.design_power(eff, g, s, sims=a.sims) for s in a.seeds]
        print(f"| {g} | {cp.critical_rho(g):.3f} | " + " | ".join(f"{x:.2f}" for x in pw) + " |")
    need = cp.needed_design(eff, rungs=a.rungs, seeds=a.seeds, sims=a.sims)
    print(
        "cheapest design with power >= 0.8: "
        + (
            f"{need['rungs']} rungs x {need['seeds']} seeds ({need['models']} models, power {need['power']:.2f})"
            if need
            else "none in the grid"
        )
    )


if __name__ == "__main__":
    main()
