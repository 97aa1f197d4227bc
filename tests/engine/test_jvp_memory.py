"""Memory estimates that keep jvp_mode="auto" from trying a J·V mode that would not fit (issue 28)."""

from __future__ import annotations

import pytest
import torch

from pullback_utils.engine import jvp_memory
from pullback_utils.engine import operators as products
from pullback_utils.engine.operators import JacobianOperator


def test_saved_bytes_counts_what_backward_keeps():
    """tanh saves its output (n float64 = 8n bytes); multiplying by a constant saves nothing; a weight of
    ``fn.unet`` is not counted, the input it multiplies is."""
    x = torch.randn(1000, dtype=torch.float64)
    assert jvp_memory.saved_bytes(torch.tanh, x) == 8000
    assert jvp_memory.saved_bytes(lambda v: v * 3.0, x) == 0

    lin = torch.nn.Linear(1000, 10, bias=False).double().requires_grad_(False)

    def fn(v):
        return lin(v)

    fn.unet = lin
    # the weight is saved (for the input's gradient) but excluded; the input needs no saving for it
    assert jvp_memory.saved_bytes(fn, x) == 0
    assert jvp_memory.saved_bytes(lambda v: torch.tanh(lin(v)), x) == 10 * 8 + 1000 * 10 * 8  # output + weight


def test_block_estimate_and_fit():
    saved = 1_000_000
    assert jvp_memory.block_bytes("reverse", saved, 10) == int(jvp_memory.BLOCK_FACTORS["reverse"] * 10 * saved)
    assert jvp_memory.BLOCK_FACTORS["reverse"] > jvp_memory.BLOCK_FACTORS["forward"]  # measured: module doc
    need_fwd = jvp_memory.block_bytes("forward", saved, 10)
    just = int(need_fwd / jvp_memory.HEADROOM) + 1
    assert jvp_memory.fitting_modes(saved, 10, just) == {"forward": True, "reverse": False}
    assert jvp_memory.fitting_modes(saved, 10, 10) == {"forward": False, "reverse": False}
    assert jvp_memory.fitting_modes(saved, 10, None) == {"forward": True, "reverse": True}
    with pytest.raises(ValueError, match="mode must be one of"):
        jvp_memory.block_bytes("sideways", saved, 1)


def test_available_bytes_on_the_cpu_is_positive_and_at_most_the_machine():
    import psutil

    free = jvp_memory.available_bytes("cpu")
    assert free is not None and 0 < free <= psutil.virtual_memory().total


def _tanh_fn(name: str):
    W = torch.randn(50, 70, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def fn(x):
        return torch.tanh(x @ W.T)

    fn.__qualname__ = name  # one architecture key per test
    return fn, W


@pytest.mark.parametrize("free, expect", [("forward only", "forward"), ("reverse only", "reverse")])
def test_auto_skips_the_mode_that_does_not_fit_without_trying_it(monkeypatch, free, expect):
    fn, W = _tanh_fn(f"fits_{expect}")
    x = torch.randn(70, dtype=torch.float64)
    tried = []
    monkeypatch.setattr(JacobianOperator, "_forward_block", lambda self, V: tried.append("forward") or 1 / 0)
    monkeypatch.setattr(
        jvp_memory,
        "fitting_modes",
        lambda saved, m, available: {"forward": expect == "forward", "reverse": expect == "reverse"},
    )
    if expect == "reverse":
        op = JacobianOperator(fn, x, jvp_mode="auto")
        V = torch.randn(4, 70, dtype=torch.float64)
        exact = (1 - torch.tanh(W @ x) ** 2)[None] * (V @ W.T)
        torch.testing.assert_close(op.jvp(V), exact)  # reverse-over-reverse, forward never called
        assert tried == [] and op.jvp_mode_used == "reverse"
    else:
        monkeypatch.undo()  # the real forward block this time
        monkeypatch.setattr(
            jvp_memory, "fitting_modes", lambda saved, m, available: {"forward": True, "reverse": False}
        )
        monkeypatch.setattr(JacobianOperator, "_ror_fn", lambda self, m: tried.append("reverse") or 1 / 0)
        op = JacobianOperator(fn, x, jvp_mode="auto")
        V = torch.randn(4, 70, dtype=torch.float64)
        exact = (1 - torch.tanh(W @ x) ** 2)[None] * (V @ W.T)
        torch.testing.assert_close(op.jvp(V), exact)
        assert tried == [] and op.jvp_mode_used == "forward"
    ((mode, t_fwd, t_rev),) = [v for k, v in products.auto_choices().items() if k[0] == f"fits_{expect}"]
    assert mode == expect and t_fwd != t_fwd and t_rev != t_rev  # NaN: nothing was timed


def test_auto_warns_and_takes_forward_when_neither_fits(monkeypatch):
    fn, W = _tanh_fn("fits_neither")
    x = torch.randn(70, dtype=torch.float64)
    monkeypatch.setattr(jvp_memory, "available_bytes", lambda device: 1)
    op = JacobianOperator(fn, x, jvp_mode="auto", chunk_size=4)  # a chunk the caller fixed: warned, not refused
    V = torch.randn(4, 70, dtype=torch.float64)
    with pytest.warns(UserWarning, match="smaller chunk_size .*PULLBACK_CHUNK_SIZE"):
        out = op.jvp(V)
    torch.testing.assert_close(out, (1 - torch.tanh(W @ x) ** 2)[None] * (V @ W.T))
    assert op.jvp_mode_used == "forward"


def test_defaults_come_from_the_environment_and_bad_values_name_the_variable(monkeypatch):
    x = torch.randn(70, dtype=torch.float64)
    fn, _ = _tanh_fn("env_defaults")
    monkeypatch.delenv(products.JVP_MODE_ENV, raising=False)
    monkeypatch.delenv(products.CHUNK_ENV, raising=False)
    op = JacobianOperator(fn, x)
    assert op.jvp_mode == "auto" and op.chunk_size == products.DEFAULT_CHUNK_SIZE
    monkeypatch.setenv(products.JVP_MODE_ENV, "forward")
    monkeypatch.setenv(products.CHUNK_ENV, "4")
    op = JacobianOperator(fn, x)
    assert op.jvp_mode == "forward" and op.jvp_mode_used == "forward" and op.chunk_size == 4
    assert JacobianOperator(fn, x, jvp_mode="reverse", chunk_size=8).chunk_size == 8  # arguments win
    monkeypatch.setenv(products.CHUNK_ENV, "0")
    with pytest.raises(ValueError, match="PULLBACK_CHUNK_SIZE must be a positive integer, got '0'"):
        JacobianOperator(fn, x)
    monkeypatch.setenv(products.CHUNK_ENV, "4")
    monkeypatch.setenv(products.JVP_MODE_ENV, "fast")
    with pytest.raises(ValueError, match="PULLBACK_JVP_MODE must be one of auto, forward, reverse, got 'fast'"):
        JacobianOperator(fn, x)


# ---------------------------------------------------------------- the chunk size chosen from the memory (issue 27)
SAVED_TANH = 50 * 8 + 50 * 70 * 8  # tanh's output and the matrix x @ W.T saves (counted in the test above's way)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_chunk_from_memory_respects_the_budget(monkeypatch, mode):
    """Budget B: the chosen m is the largest with saved + factor·m·saved <= HEADROOM·B, for J·V in the mode
    in use and for Jᵀu; the products stay exact when V is split into such chunks."""
    fn, W = _tanh_fn(f"budget_{mode}")
    x = torch.randn(70, dtype=torch.float64)
    assert jvp_memory.saved_bytes(fn, x) == SAVED_TANH
    budget = int(SAVED_TANH * 9.5 / jvp_memory.HEADROOM)  # room for 8.5 saved passes beside the recorded one
    monkeypatch.delenv(products.CHUNK_ENV, raising=False)
    monkeypatch.setattr(jvp_memory, "available_bytes", lambda device: budget)
    op = JacobianOperator(fn, x, jvp_mode=mode)
    V = torch.randn(11, 70, dtype=torch.float64)
    exact = (1 - torch.tanh(W @ x) ** 2)[None] * (V @ W.T)
    torch.testing.assert_close(op.jvp(V), exact)
    U = torch.randn(11, 50, dtype=torch.float64)
    torch.testing.assert_close(op.vjp(U), (U * (1 - torch.tanh(W @ x) ** 2)[None]) @ W)
    for kind, factor in (("jvp", jvp_memory.BLOCK_FACTORS[mode]), ("vjp", jvp_memory.VJP_FACTOR)):
        m = op.chunks_used[kind]
        # reverse-over-reverse records the pass during J·V, so the later Jᵀu block does not count it again
        pass_ = 0 if (mode, kind) == ("reverse", "vjp") else 1
        assert m == int((9.5 - pass_) / factor)  # forward 1.5: 5 vectors; reverse 4.0: 2; Jᵀu after it: 6
        assert SAVED_TANH * (pass_ + factor * m) <= jvp_memory.HEADROOM * budget
        assert SAVED_TANH * (pass_ + factor * (m + 1)) > jvp_memory.HEADROOM * budget


def test_a_budget_too_small_for_one_vector_is_refused_naming_the_settings(monkeypatch):
    fn, _ = _tanh_fn("budget_none")
    x = torch.randn(70, dtype=torch.float64)
    monkeypatch.delenv(products.CHUNK_ENV, raising=False)
    monkeypatch.setattr(jvp_memory, "available_bytes", lambda device: SAVED_TANH)  # < saved·(1 + 1.5) / 0.8
    calls = []
    monkeypatch.setattr(JacobianOperator, "_forward_block", lambda self, V: calls.append(1))
    op = JacobianOperator(fn, x, jvp_mode="forward")
    with pytest.raises(
        jvp_memory.MemoryBudgetError, match="chunk_size .*PULLBACK_CHUNK_SIZE.*cannot go below 1.*PULLBACK_MEMORY_LIMIT"
    ):
        op.jvp(torch.randn(3, 70, dtype=torch.float64))
    assert calls == []  # refused before any product
    with pytest.raises(jvp_memory.MemoryBudgetError, match="Jᵀu"):
        op.vjp(torch.randn(3, 50, dtype=torch.float64))


def test_auto_never_tries_the_mode_of_which_one_vector_does_not_fit(monkeypatch):
    """Room for forward mode (factor 1.5) but not for reverse-over-reverse (4.0) at even one vector:
    auto decides on forward without a trial, and blocks are forward mode's largest."""
    fn, W = _tanh_fn("budget_auto")
    x = torch.randn(70, dtype=torch.float64)
    budget = int(SAVED_TANH * 4.0 / jvp_memory.HEADROOM)  # 3 passes of room: forward 2 vectors, reverse 0
    monkeypatch.delenv(products.CHUNK_ENV, raising=False)
    monkeypatch.setattr(jvp_memory, "available_bytes", lambda device: budget)
    tried = []
    monkeypatch.setattr(JacobianOperator, "_ror_fn", lambda self, m: tried.append(m) or 1 / 0)
    op = JacobianOperator(fn, x, jvp_mode="auto")
    V = torch.randn(5, 70, dtype=torch.float64)
    torch.testing.assert_close(op.jvp(V), (1 - torch.tanh(W @ x) ** 2)[None] * (V @ W.T))
    assert tried == [] and op.jvp_mode_used == "forward" and op.chunks_used["jvp"] == 2


def test_auto_trial_runs_at_a_size_both_modes_fit_then_the_winner_gets_its_own(monkeypatch):
    fn, _ = _tanh_fn("budget_trial")
    x = torch.randn(70, dtype=torch.float64)
    budget = int(SAVED_TANH * 9.5 / jvp_memory.HEADROOM)  # forward 5 vectors, reverse 2
    monkeypatch.delenv(products.CHUNK_ENV, raising=False)
    monkeypatch.setattr(jvp_memory, "available_bytes", lambda device: budget)
    sizes = []
    real = JacobianOperator._auto_block

    def spy(self, V):
        sizes.append(V.shape[0])
        return real(self, V)

    monkeypatch.setattr(JacobianOperator, "_auto_block", spy)
    op = JacobianOperator(fn, x, jvp_mode="auto")
    op.jvp(torch.randn(6, 70, dtype=torch.float64))
    assert sizes[0] == 2  # the trial block: the smaller of the two largest
    assert op.chunks_used["jvp"] == {"forward": 5, "reverse": 2}[op.jvp_mode_used]


def test_a_fixed_chunk_asks_no_memory(monkeypatch):
    fn, _ = _tanh_fn("budget_fixed")
    x = torch.randn(70, dtype=torch.float64)
    monkeypatch.setattr(jvp_memory, "available_bytes", lambda device: 1 / 0)
    monkeypatch.setenv(products.CHUNK_ENV, "3")
    op = JacobianOperator(fn, x, jvp_mode="forward")
    op.jvp(torch.randn(4, 70, dtype=torch.float64))
    assert op.chunks_used == {"jvp": 3, "vjp": 3}


@pytest.mark.parametrize(
    "raw, expect",
    [("12GB", 12 * 10**9), ("500 MB", 500 * 10**6), ("8GiB", 8 * 2**30), ("1.5G", 15 * 10**8), ("4096", 4096)],
)
def test_memory_limit_caps_the_free_memory(monkeypatch, raw, expect):
    monkeypatch.setenv(jvp_memory.MEMORY_LIMIT_ENV, raw)
    assert jvp_memory.memory_limit() == expect
    assert jvp_memory.available_bytes("cpu") <= expect


@pytest.mark.parametrize("raw", ["lots", "-3GB", "12XB", "0"])
def test_a_bad_memory_limit_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv(jvp_memory.MEMORY_LIMIT_ENV, raw)
    with pytest.raises(ValueError, match="PULLBACK_MEMORY_LIMIT must be a positive size"):
        jvp_memory.memory_limit()


def test_a_recorded_pass_is_not_counted_twice(monkeypatch):
    """After a Jᵀu block the forward pass is in memory (out of the free memory already): the J·V block size
    then counts only the product's own memory."""
    fn, _ = _tanh_fn("budget_recorded")
    x = torch.randn(70, dtype=torch.float64)
    budget = int(SAVED_TANH * 9.5 / jvp_memory.HEADROOM)
    assert jvp_memory.max_chunk("forward", SAVED_TANH, budget, 64) == 5  # 8.5 passes of room
    assert jvp_memory.max_chunk("forward", SAVED_TANH, budget, 64, recorded=True) == 6  # 9.5
    monkeypatch.delenv(products.CHUNK_ENV, raising=False)
    monkeypatch.setattr(jvp_memory, "available_bytes", lambda device: budget)
    op = JacobianOperator(fn, x, jvp_mode="forward")
    op.vjp(torch.randn(2, 50, dtype=torch.float64))
    op.jvp(torch.randn(7, 70, dtype=torch.float64))
    assert op.chunks_used == {"vjp": 5, "jvp": 6}
