"""The Gaussian control beside the trained model for the claims it can explain (coarse to fine, early
similarity, dataset complexity): the claim's statistic on both, the excess test, the Gaussian share.

Uses the chapters' statistics (:mod:`pullback_utils.claims.statistics`) and the shared basis cache, on
one torch thread. The sizes are flags (the defaults keep it to a few CPU minutes, smaller than the
chapters' defaults)::

    python benchmarks/gaussian_control.py
    python benchmarks/gaussian_control.py --n 20 --times 0.9 0.7 0.5 0.3 0.1 --ladder-n 12
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import pullback_utils as pu
from pullback_utils.analysis import gaussian as pg
from pullback_utils.claims import statistics as cs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="disks")
    ap.add_argument("--n", type=int, default=10, help="samples of the disks model")
    ap.add_argument("--times", type=float, nargs="+", default=[0.9, 0.5, 0.1])
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--tol", type=float, default=0.01)
    ap.add_argument("--ddim-steps", type=int, default=20)
    ap.add_argument("--images", type=int, default=3000, help="fresh training images the Gaussian is fitted on")
    ap.add_argument("--rank", type=int, default=512)
    ap.add_argument("--share-k", type=int, default=128)
    ap.add_argument("--ladder-n", type=int, default=4, help="samples per ladder model (0: skip claim 4)")
    ap.add_argument("--ladder-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--cache-dir", default="~/.cache/pullback_book/bases")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    t0, c0 = time.perf_counter(), time.process_time()
    solver = {"method": "krylov", "tol": a.tol, "max_iters": 30, "seed": a.seed}
    m = pu.load_model(a.model)
    ds = pu.chapters.measurements.model_dataset(m)
    study = pu.chapters.measurements.tangent_study(
        m,
        n=a.n,
        seed=a.seed,
        times=a.times,
        k=a.k,
        ddim_steps=a.ddim_steps,
        control_times=[max(a.times), min(a.times)],
        cache_dir=a.cache_dir,
        solver=solver,
        progress=False,
    )
    g_opts = dict(dataset=ds, n_images=a.images, rank=a.rank, seed=a.seed, cache_dir=a.cache_dir)
    gauss, fit = pu.sweeps.gaussian_control.gaussian(m, a.times, a.k, a.n, **g_opts)
    gx0, _ = pu.sweeps.gaussian_control.gaussian(m, a.times, a.k, a.n, output="sample", **g_opts)
    print(
        f"model {a.model} ({m.prediction_type}), n = {a.n}, times = {a.times}, k = {a.k}; Gaussian of {fit.n_images} "
        f"'{ds}' images, rank {fit.rank}; alpha_bar = {[round(m.alpha_bar(t), 4) for t in a.times]}"
    )
    print(f"h-analogue top-k degenerate at t: {[t for t, row in zip(a.times, gauss.info) if row[0]['degenerate']]}")

    # claim 1: coarse to fine
    ps, gps, gps0 = (pu.analysis.spectra.psd_summary(s) for s in (study.sweep, gauss, gx0))
    ctrl = pu.analysis.spectra.psd_summary(study.control)
    res = cs.coarse_to_fine(ps["low_share"], a.times, seed=a.seed)
    print("\n[1] coarse to fine: low-band share (f <= N/4) at t =", a.times)
    print(
        "  trained           ",
        np.round(ps["low_share"].mean(1), 3),
        f"shift {res.estimate:.3f} (p = {res.p_value:.2g})",
    )
    print(
        "  Gaussian d v/dx   ",
        np.round(gps["low_share"][:, 0], 3),
        f"shift {cs.coarse_to_fine(gps['low_share'], a.times).estimate:.3f}",
    )
    print(
        "  Gaussian d x0/dx  ",
        np.round(gps0["low_share"][:, 0], 3),
        f"shift {cs.coarse_to_fine(gps0['low_share'], a.times).estimate:.3f}",
    )
    print("  random weights    ", np.round(ctrl["low_share"].mean(1), 3), "at t =", study.control_times)
    for o in (m.prediction_type, "sample"):
        ew = [pg.energy_low_share(fit, m.alpha_bar(t), ps["cutoff"], o) for t in a.times]
        print(f"  energy-weighted share of the whole {o} Jacobian", np.round(ew, 3))
    ex = cs.coarse_to_fine_excess(ps["low_share"], gps["low_share"], a.times, seed=a.seed)
    print(
        f"  excess over the Gaussian (h-analogue): {ex.estimate:.3f} [{ex.ci[0]:.3f}, {ex.ci[1]:.3f}], "
        f"p = {ex.p_value:.2g}"
    )
    ex0 = cs.coarse_to_fine_excess(ps["low_share"], gps0["low_share"], a.times, seed=a.seed)
    print(
        f"  excess over the Gaussian (denoiser):   {ex0.estimate:.3f} [{ex0.ci[0]:.3f}, {ex0.ci[1]:.3f}], "
        f"p = {ex0.p_value:.2g}"
    )
    for name, v in (
        ("trained", study.sweep.v),
        ("Gaussian d v/dx", gauss.v),
        ("Gaussian d x0/dx", gx0.v),
        ("random weights", study.control.v),
    ):
        sh = pg.gaussian_share(v, fit, a.share_k).mean(-1).numpy().mean(1)
        print(f"  Gaussian share (top {a.share_k} PCs) {name:18s}", np.round(sh, 3))

    # claim 2: early similarity
    cross, g_cross = study.sweep.cross_sample_distances("u"), gauss.cross_sample_distances("u")
    iu = np.triu_indices(a.n, 1)
    es, gs = cs.early_similarity(cross, a.times), cs.early_similarity(g_cross, a.times)
    ex = cs.early_similarity_excess(cross, g_cross, a.times)
    to_g = [
        np.mean(
            [
                float(
                    pu.analysis.geometry.geodesic_distance(
                        study.sweep.v[i, j].reshape(a.k, -1).double(), gauss.v[i, 0].reshape(a.k, -1).double()
                    )
                )
                for j in range(a.n)
            ]
        )
        for i in range(len(a.times))
    ]
    print("\n[2] early similarity: mean cross-sample distance span(u) (rad) at t =", a.times)
    print(
        "  trained ",
        np.round(cross[:, iu[0], iu[1]].mean(1), 3),
        f"late - early {es.estimate:.3f} (p = {es.p_value:.2g})",
    )
    print("  Gaussian", np.round(g_cross[:, iu[0], iu[1]].mean(1), 3), f"late - early {gs.estimate:.3f}")
    print(f"  excess over the Gaussian: {ex.estimate:.3f} [{ex.ci[0]:.3f}, {ex.ci[1]:.3f}], p = {ex.p_value:.2g}")
    print(
        "  distance of the trained span(v) to the Gaussian's basis (rad):",
        np.round(to_g, 3),
        "(random subspaces: "
        f"{float(pu.analysis.geometry.random_subspace_distance(study.sweep.dim('v'), a.k, 200).mean()):.3f})",
    )

    # claim 4: dataset complexity
    if a.ladder_n > 0:
        from pullback_utils.zoo import ladder, registry

        plan = pu.chapters.measurements.ladder_plan(list(ladder.RUNGS), a.ladder_seeds)
        runs = pu.chapters.measurements.model_sweeps(
            plan["present"],
            n=a.ladder_n,
            seed=a.seed,
            times=[max(a.times), min(a.times)],
            k=a.k,
            ddim_steps=a.ddim_steps,
            cache_dir=a.cache_dir,
            solver=solver,
            progress=False,
        )
        x, sp, gsp, dist = [], [], [], []
        for name, r in runs.items():
            lm = pu.load_model(name)
            gl, gf = pu.sweeps.gaussian_control.gaussian(
                lm,
                r.sweep.times,
                a.k,
                a.ladder_n,
                dataset=registry.MODELS[name]["dataset"],
                n_images=a.images,
                rank=a.rank,
                seed=a.seed,
                cache_dir=a.cache_dir,
            )
            x.append(ladder.n_factors(registry.MODELS[name]["rung"]))
            sp.append(cs.model_spread(r.sweep.cross_sample_distances("u")))
            gsp.append(cs.model_spread(gl.cross_sample_distances("u")))
            dist.append(
                np.mean(
                    [
                        float(
                            pu.analysis.geometry.geodesic_distance(
                                r.sweep.v[i, j].reshape(a.k, -1).double(), gl.v[i, 0].reshape(a.k, -1).double()
                            )
                        )
                        for i in range(len(r.sweep.times))
                        for j in range(a.ladder_n)
                    ]
                )
            )
        tr = cs.complexity_trend(x, sp, seed=a.seed)
        ex = cs.complexity_trend_excess(x, sp, gsp, seed=a.seed)
        print(f"\n[4] dataset complexity over {len(runs)} ladder models (n = {a.ladder_n}, t = {r.sweep.times}):")
        for name, xi, s_, g_, d_ in zip(runs, x, sp, gsp, dist):
            print(
                f"  {name:12s} factors {xi:2d}  spread trained {s_:.3f}  Gaussian {g_:.3g}  "
                f"span(v) to Gaussian {d_:.3f}"
            )
        print(
            f"  trained rho {tr.estimate:.3f} (p = {tr.p_value:.2g}); Gaussian: spreads all {max(gsp):.1g}, no trend; "
            f"excess rho {ex.estimate:.3f} (p = {ex.p_value:.2g}); distance-to-Gaussian rho "
            f"{cs.complexity_trend(x, dist, seed=a.seed).estimate:.3f}"
        )
    print(f"\nwall {time.perf_counter() - t0:.0f} s, CPU {time.process_time() - c0:.0f} s")


if __name__ == "__main__":
    main()
