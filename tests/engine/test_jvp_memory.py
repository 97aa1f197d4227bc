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
    monkeypatch.setattr(jvp_memory, "fitting_modes",
                        lambda saved, m, available: {"forward": expect == "forward", "reverse": expect == "reverse"})
    if expect == "reverse":
        op = JacobianOperator(fn, x, jvp_mode="auto")
        V = torch.randn(4, 70, dtype=torch.float64)
        exact = (1 - torch.tanh(W @ x) ** 2)[None] * (V @ W.T)
        torch.testing.assert_close(op.jvp(V), exact)  # reverse-over-reverse, forward never called
        assert tried == [] and op.jvp_mode_used == "reverse"
    else:
        monkeypatch.undo()  # the real forward block this time
        monkeypatch.setattr(jvp_memory, "fitting_modes", lambda saved, m, available: {"forward": True, "reverse": False})
        monkeypatch.setattr(JacobianOperator, "_ror_fn", lambda self, m: tried.append("reverse") or 1 / 0)
        op = JacobianOperator(fn, x, jvp_mode="auto")
        V = torch.randn(4, 70, dtype=torch.float64)
        exact = (1 - torch.tanh(W @ x) ** 2)[None] * (V @ W.T)
        torch.testing.assert_close(op.jvp(V), exact)
        assert tried == [] and op.jvp_mode_used == "forward"
    (mode, t_fwd, t_rev), = [v for k, v in products.auto_choices().items() if k[0] == f"fits_{expect}"]
    assert mode == expect and t_fwd != t_fwd and t_rev != t_rev  # NaN: nothing was timed


def test_auto_warns_and_takes_forward_when_neither_fits(monkeypatch):
    fn, W = _tanh_fn("fits_neither")
    x = torch.randn(70, dtype=torch.float64)
    monkeypatch.setattr(jvp_memory, "available_bytes", lambda device: 1)
    op = JacobianOperator(fn, x, jvp_mode="auto")
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
