"""jacobian_svd never claims a convergence it does not have (issue 25, item 1).

Oracle: linear maps fn(x) = A x with A = U diag(s) Vᵀ built from a chosen spectrum s and random
orthonormal U, V, so the true top-k right singular subspace is V[:, :k] (or, for a tie at k, not
determined at all). Property: for every method and tol in {1e-3, 1e-2, 0.1, 0.5}, on random spectra
(seeded) of five shapes (slowly decaying, geometric, clustered, flat, U-Net-like),

    converged=True  =>  true angle <= 2 · tol  and  estimate >= true angle / 2.

The factor 2: the estimate is the Davis–Kahan bound (never below the true angle when the gap is
verified) or, when smaller, the geometric extrapolation of the last subspace changes, which is
trusted only once the gap is verified and both of the last two convergence rates are below 0.9;
the module doc of ``pullback_utils.engine.solvers`` reports it within 2x of the true angle. On today's code
(before this change) these tests fail: e.g. randomized at tol 0.1 claims 0.07 rad on the slow
spectrum at a true angle of 1.49, power claims convergence on a flat spectrum.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from oracles import max_angle

from pullback_utils.engine.solvers import jacobian_svd

TOLS = [1e-3, 1e-2, 0.1, 0.5]
METHODS = ["power", "randomized", "krylov", "exact"]
DIM_X, DIM_H = 120, 80
# σ_i / σ_1 of the bundled disks model's mid-block Jacobian at these i (exact SVD, t = 500;
# benchmarks/solver_honesty.py): one large σ_1, then a slow decay
UNET_INDEX = [0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100, 200]
UNET_VALUES = [
    1.0,
    0.4206,
    0.3089,
    0.2686,
    0.2505,
    0.2361,
    0.2205,
    0.2054,
    0.1908,
    0.1636,
    0.1486,
    0.1235,
    0.0923,
    0.0504,
    0.0248,
]


def random_spectrum(shape: str, n: int, gen: torch.Generator) -> torch.Tensor:
    """(n,) descending singular values of the given shape, randomised by ``gen``."""
    u = lambda *size: torch.rand(*size, generator=gen, dtype=torch.float64)  # noqa: E731
    i = torch.arange(n, dtype=torch.float64)
    if shape == "slow":  # linear from 1 to a in (0.3, 0.9)
        s = torch.linspace(1, 0.3 + 0.6 * float(u(1)), n, dtype=torch.float64)
    elif shape == "geometric":  # r^i, r in (0.85, 0.99)
        s = (0.85 + 0.14 * float(u(1))) ** i
    elif shape == "clustered":  # clusters of 2..6 nearly equal values (spread 1e-5..1e-3), falling
        vals, level = [], 1.0
        while sum(v.numel() for v in vals) < n:
            size = int(2 + 5 * float(u(1)))
            vals.append(level * (1 + 10 ** (-5 + 2 * float(u(1))) * u(size)))
            level *= 0.8 + 0.15 * float(u(1))
        s = torch.cat(vals)[:n]
    elif shape == "flat":  # 1 + noise of size 1e-8..1e-4
        s = 1 + 10 ** (-8 + 4 * float(u(1))) * u(n)
    elif shape == "unet":  # the disks U-Net's shape, each value jittered by up to ±5 %
        idx = torch.tensor(UNET_INDEX, dtype=torch.float64)
        val = torch.tensor(UNET_VALUES, dtype=torch.float64).log()
        j = torch.searchsorted(idx, i, right=True).clamp(1, idx.numel() - 1)
        w = (i - idx[j - 1]) / (idx[j] - idx[j - 1])
        s = (val[j - 1] * (1 - w) + val[j] * w).exp() * (1 + 0.1 * (u(n) - 0.5))
    else:
        raise ValueError(shape)
    return torch.sort(s, descending=True).values


def linear_map(s: torch.Tensor, gen: torch.Generator):
    """fn(x) = A x, A (len(s), DIM_X) with singular values s; the right singular vectors as rows."""
    U, _ = torch.linalg.qr(torch.randn(s.numel(), s.numel(), generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(DIM_X, s.numel(), generator=gen, dtype=torch.float64))
    A = U @ torch.diag(s) @ V.T
    return (lambda z: A @ z), V.T


SHAPES = ["slow", "geometric", "clustered", "flat", "unet"]
CASES = [(shape, seed) for shape in SHAPES for seed in range(2)]


def run(method, tol, shape, seed, k):
    gen = torch.Generator().manual_seed(1000 * SHAPES.index(shape) + seed)
    s = random_spectrum(shape, DIM_H, gen)
    fn, Vt = linear_map(s, gen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        # (power: 30 iterations instead of 100 keep the test short; honesty must hold at any cap)
        b = jacobian_svd(
            fn,
            torch.zeros(DIM_X, dtype=torch.float64),
            k,
            method=method,
            tol=tol,
            seed=seed,
            max_iters=30 if method == "power" else None,
        )
    # the true subspace is determined only when σ_k > σ_{k+1}; for a tie, any answer is "wrong"
    true = max_angle(b.v, Vt[:k]) if float(s[k - 1] - s[k]) > 0 else math.pi / 2
    return b, true, s


#: Cases where converged=True with an estimate more than 2x under the truth that are known and accepted
#: (none since the extrapolation reads the slowest of the last three rates and adds the last change).
KNOWN_UNDERESTIMATES: set[tuple] = set()


@pytest.mark.parametrize("tol", TOLS)
@pytest.mark.parametrize("method", METHODS)
def test_converged_means_within_tolerance(method, tol):
    claims, lies = 0, []
    for shape, seed in CASES:
        for k in (3,) if method == "power" else (3, 6):  # (power: the slowest; one k)
            b, true, _ = run(method, tol, shape, seed, k)
            est = float(b.info["angle_estimate"])
            assert 0 <= est <= math.pi / 2
            if b.info["converged"]:
                claims += 1
                if not (true <= 2 * tol and est >= true / 2):
                    lies.append((shape, seed, k, f"estimate {est:.3g}", f"true {true:.3g}"))
            else:
                assert b.info["reason"], "an unconverged basis says why"
    unexplained = [lie for lie in lies if (method, tol, *lie[:3]) not in KNOWN_UNDERESTIMATES]
    assert not unexplained, f"{method} tol={tol}: converged=True but: {lies}"
    if lies:  # strict: once fixed, this xfail turns into a failure and the entry must go
        pytest.xfail(f"known: {lies}")
    if method != "power":  # the official power iteration may never get there in 100 iterations
        assert claims >= 4, f"{method} tol={tol}: converged on only {claims} of {2 * len(CASES)} cases"


def test_power_reports_its_stopping_rule_apart():
    """On the issue's slowly decaying spectrum the power iterate stops changing far from the answer."""
    gen = torch.Generator().manual_seed(0)
    fn, Vt = linear_map(torch.linspace(1, 0.6, DIM_H, dtype=torch.float64), gen)
    with pytest.warns(RuntimeWarning, match="stopped changing"):
        b = jacobian_svd(fn, torch.zeros(DIM_X, dtype=torch.float64), 5, method="power", tol=0.01)
    true = max_angle(b.v, Vt[:5])
    assert b.info["stopped_changing"] is True and b.info["converged"] is False
    assert true > 0.1 and b.info["angle_estimate"] >= true / 2


def test_issue_cases_300_to_200():
    """The reported cases: a 300 -> 200 map, σ falling linearly from 1 to 0.6."""
    gen = torch.Generator().manual_seed(0)
    U, _ = torch.linalg.qr(torch.randn(200, 200, generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(300, 200, generator=gen, dtype=torch.float64))
    A = U @ torch.diag(torch.linspace(1, 0.6, 200, dtype=torch.float64)) @ V.T
    x = torch.zeros(300, dtype=torch.float64)
    for method, k, tol in [("randomized", 5, 0.1), ("randomized", 5, 1.0), ("krylov", 2, 0.1)]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            b = jacobian_svd(lambda z: A @ z, x, k, method=method, tol=tol)
        true = max_angle(b.v, V[:, :k].T)
        if b.info["converged"]:
            assert true <= 2 * tol and b.info["angle_estimate"] >= true / 2, (method, k, tol, true)
    with pytest.raises(ValueError, match=r"tol must be a number in \(0, pi/2\)"):
        jacobian_svd(lambda z: A @ z, x, 5, method="randomized", tol=2.0)


def test_flat_spectrum_at_k_is_not_claimed_and_warns_with_k_and_gap():
    gen = torch.Generator().manual_seed(3)
    s = torch.cat([torch.tensor([3.0, 2.0], dtype=torch.float64), torch.ones(DIM_H - 2, dtype=torch.float64)])
    fn, _ = linear_map(s, gen)
    for method in ("krylov", "exact"):
        with pytest.warns(RuntimeWarning, match=r"k = 4 .*no spectral gap after sigma_4 .*relative gap"):
            b = jacobian_svd(fn, torch.zeros(DIM_X, dtype=torch.float64), 4, method=method, tol=0.1)
        assert b.info["converged"] is False and b.info["gap"] <= 0
        assert b.info["reason"].startswith("no spectral gap")
    # at k = 2 the gap (4 - 1 = 3 in σ²) is clear: converged, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = jacobian_svd(fn, torch.zeros(DIM_X, dtype=torch.float64), 2, method="krylov", tol=1e-3)
    assert b.info["converged"] is True and b.info["gap"] > 0.5


@pytest.mark.parametrize("tol", [0, -1.0, math.pi / 2, 2.0, math.inf, math.nan])
def test_tol_outside_zero_to_half_pi_is_refused(tol):
    with pytest.raises(ValueError, match=r"tol must be a number in \(0, pi/2\)"):
        jacobian_svd(lambda z: 2 * z, torch.zeros(10, dtype=torch.float64), 2, tol=tol)


# ------------------------------------------------------------------ stochastic functions (item 4)
def test_train_mode_dropout_is_refused_before_any_product():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.Tanh(), torch.nn.Dropout(0.3), torch.nn.Linear(20, 8))
    net.train()
    x = torch.randn(10)
    with pytest.raises(ValueError, match=r"Dropout\(p=0.3\) in training mode .*\.eval\(\)"):
        jacobian_svd(net, x, 2)
    with pytest.raises(ValueError, match=r"Dropout\(p=0.3\) in training mode"):
        jacobian_svd(lambda z: net(z) * 2, x, 2)  # the module held by a closure
    net.eval()
    b = jacobian_svd(net, x, 2)
    assert b.info["converged"] is True


def test_a_stochastic_function_is_refused():
    """Noise the module check cannot see: two evaluations at the same x differ."""
    W = torch.randn(8, 10, generator=torch.Generator().manual_seed(0))

    def noisy(z):
        return W @ z + 0.1 * torch.randn(8)

    with pytest.raises(ValueError, match=r"not deterministic.*f\.eval\(\)"):
        jacobian_svd(noisy, torch.randn(10), 2)
