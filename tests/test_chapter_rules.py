"""Timestep discrepancy's lag design is checked before any basis is computed."""

from __future__ import annotations

import pytest

from pullback_utils.chapters import chapter


def _setup(tmp_path, **p):
    base = {
        "times": [0.9, 0.5, 0.1],
        "ablation_times": [0.9, 0.1],
        "ddim_steps": 20,
        "anchor_time": 0.5,
        "output_dir": str(tmp_path),
        "cache_dir": "",
    }
    return chapter.setup("timestep_discrepancy", {**base, **p})


def test_lags_start_at_the_sampler_step_and_stay_in_range(tmp_path):
    ch = _setup(tmp_path, lags=[0.2, 0.05, 0.1])
    assert ch.params["lags"] == [0.05, 0.1, 0.2]
    with pytest.raises(
        chapter.ParameterValueError, match=r"lags must start at the sampler's own step 1/ddim_steps = 0.05"
    ):
        _setup(tmp_path, lags=[0.1, 0.2])
    with pytest.raises(chapter.ParameterValueError, match=r"anchor_time \+ lag must lie in \(0, 1\]; lags \[0.6\]"):
        _setup(tmp_path, lags=[0.05, 0.6])
    with pytest.raises(chapter.ParameterValueError, match="lags must be a non-empty list"):
        _setup(tmp_path, lags=[])
