"""False-positive rate and power of every claim test at the size the book uses, by simulation.

    python benchmarks/claim_calibration.py [--sims 2000]

Prints one row per claim: its test, the book's default number of units, the simulated rejection rate
at alpha = 0.05 under a true null (with its Monte-Carlo standard error) and the power at a stated
effect. The nulls and effects are the synthetic fields of tests/analysis/test_inference.py and
tests/claims/test_statistics.py; the old percentile bootstrap over 3-6 samples is shown for comparison.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_inference import _mantel_data, _pair_null  # noqa: E402

from pullback_utils.analysis import inference as inf  # noqa: E402
from pullback_utils.analysis.descriptive import bootstrap_ci  # noqa: E402


def rate(fn, sims: int) -> tuple[float, float]:
    r = float(np.mean([fn(i) for i in range(sims)]))
    return r, math.sqrt(max(r * (1 - r), 1e-12) / sims)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sims", type=int, default=2000)
    a = p.parse_args()
    n_sims = a.sims
    rng = np.random.default_rng(0)
    cov = np.repeat([2, 3, 6, 9, 15], 3)
    rows = [
        (
            "coarse to fine, timestep discrepancy, edits (sign-flip over samples)",
            20,
            lambda i: inf.sign_flip_test(rng.standard_normal(20), n_draws=999, seed=i).p_value < 0.05,
            lambda i: inf.sign_flip_test(rng.standard_normal(20) + 0.8, n_draws=999, seed=i).p_value < 0.05,
            "shift 0.8 sd",
        ),
        (
            "early similarity (jackknife t over samples, 20 samples = 190 pairs)",
            20,
            lambda i: inf.pair_u_test(_pair_null(rng, 20)).p_value < 0.05,
            lambda i: inf.pair_u_test(_pair_null(rng, 20, effect=1.6)).p_value < 0.05,
            "shift 1.6 (unit sd 1)",
        ),
        (
            "per-model early similarity (jackknife t, 12 samples)",
            12,
            lambda i: inf.pair_u_test(_pair_null(rng, 12)).p_value < 0.05,
            lambda i: inf.pair_u_test(_pair_null(rng, 12, effect=1.6)).p_value < 0.05,
            "shift 1.6",
        ),
        (
            "text influence fades (sign-flip over 10 prompt-states)",
            10,
            lambda i: inf.sign_flip_test(rng.standard_normal(10), n_draws=999, seed=i).p_value < 0.05,
            lambda i: inf.sign_flip_test(rng.standard_normal(10) + 1.0, n_draws=999, seed=i).p_value < 0.05,
            "shift 1.0 sd",
        ),
        (
            "similar prompts (Mantel, 8 prompts x 10 states, prompts permuted)",
            10,
            lambda i: inf.mantel_test(*_mantel_data(rng, 10, 8, 0.0), n_draws=999, exact_max=1).p_value < 0.05,
            lambda i: inf.mantel_test(*_mantel_data(rng, 10, 8, 2.0), n_draws=999, exact_max=1).p_value < 0.05,
            "distance +2 per unit dissimilarity",
        ),
        (
            "dataset complexity (permutation trend, 5 rungs x 3 seeds)",
            15,
            lambda i: inf.permutation_trend_test(cov, rng.standard_normal(15), n_draws=999, seed=i).p_value < 0.05,
            lambda i: (
                inf.permutation_trend_test(cov, 0.25 * cov + rng.standard_normal(15), n_draws=999, seed=i).p_value
                < 0.05
            ),
            "0.25 sd per factor",
        ),
    ]
    print(f"{'claim test':<72}{'n':>4}{'false positives':>20}{'power':>16}  effect")
    for name, n, null, alt, eff in rows:
        f, fse = rate(null, n_sims)
        pw, pse = rate(alt, max(200, n_sims // 4))
        print(f"{name:<72}{n:>4}{f:>13.3f} ± {fse:.3f}{pw:>10.3f} ± {pse:.3f}  {eff}")
    print("\nfor comparison, the old rule (95% percentile bootstrap excludes 0) under a true null:")
    for n in (3, 4, 5, 6, 20):
        f, fse = rate(
            lambda i: (lambda e: e[1] > 0 or e[2] < 0)(bootstrap_ci(rng.standard_normal(n), n_boot=500, seed=i)),
            n_sims // 2,
        )
        print(f"  n = {n:>2}: false 'reproduced or not reproduced' rate {f:.3f} ± {fse:.3f} (two-sided; 0.05 promised)")


if __name__ == "__main__":
    main()
