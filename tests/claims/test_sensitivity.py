"""Sensitivity rows: built with the claim's own rule, validated by the record contract, tabulated by the
scorecard with a stable/fragile mark per claim."""

from __future__ import annotations

import numpy as np
import pytest

from pullback_utils import claims, inference as inf, scorecard as sc
from pullback_utils.claims.sensitivity import FRAGILE, NOT_ASSESSED, STABLE, check_rows, row, stability


def _res(shift: float, n: int = 20, seed: int = 0) -> inf.TestResult:
    return inf.sign_flip_test(np.random.default_rng(seed).standard_normal(n) + shift, n_draws=999)


def _record(shift: float, sens_shifts: dict[str, float]) -> dict:
    rows = [row("coarse_to_fine", s, _res(v, seed=i + 1)) for i, (s, v) in enumerate(sens_shifts.items())]
    return claims.record("coarse_to_fine", _res(shift), model="disks", baselines={"white_noise_low_share": 0.07},
                         controls={"random_weights": 0.0}, sensitivity=rows)


def test_a_row_takes_the_claims_rule_and_names_its_factor():
    r = row("similar_prompts", "k=4", _res(-2.0))  # similar prompts claims "less": a negative effect reproduces
    assert r["verdict"] == inf.REPRODUCED and r["setting"] == "k=4" and r["n_units"] == 20
    assert row("coarse_to_fine", "k=4", _res(-2.0))["verdict"] == inf.NOT_REPRODUCED
    assert row("coarse_to_fine", "k=4", _res(0.0, n=4))["verdict"] == inf.UNDERPOWERED  # 2/16 > 0.05
    with pytest.raises(ValueError, match="factor"):
        row("coarse_to_fine", "k4", _res(1.0))


def test_the_contract_validates_rows_and_refuses_a_hand_edited_verdict(tmp_path):
    rec = _record(1.5, {"k=2": 1.5, "k=4": 1.2})
    path = claims.write_metrics(tmp_path, "coarse_to_fine", {"coarse_to_fine": rec}, {})
    back = claims.read_metrics(path)["claims"]["coarse_to_fine"]
    assert [r["setting"] for r in back["sensitivity"]] == ["k=2", "k=4"]
    bad = dict(rec, sensitivity=[dict(rec["sensitivity"][0], verdict=inf.NOT_REPRODUCED)])
    with pytest.raises(claims.MetricsError, match=r"sensitivity.*rule gives"):
        claims.write_metrics(tmp_path, "coarse_to_fine", {"coarse_to_fine": bad}, {})
    for broken, msg in ((dict(rec["sensitivity"][0], p_value=1.5), "lie in"),
                        ({"setting": "k=2", "estimate": float("nan"), "p_value": 0.1, "verdict": "x"}, "finite"),
                        ({"setting": "k=2", "estimate": 1.0}, "lacks")):
        with pytest.raises(ValueError, match=msg):
            check_rows([broken], direction="greater", null=0.0)
    with pytest.raises(ValueError, match="list"):
        check_rows({"k=2": 1}, direction="greater", null=0.0)


def test_stable_when_every_setting_agrees_fragile_when_one_flips():
    assert stability(_record(1.5, {"k=2": 1.4, "k=16": 1.6, "cutoff=1/8": 1.3}))[0] == STABLE
    mark, off = stability(_record(1.5, {"k=2": -1.5, "k=4": 1.4}))  # the sign flips at k = 2
    assert mark == FRAGILE and off == ["k=2"]
    mark, off = stability(_record(1.5, {"k=4": 0.0}))  # significance lost at one k: also fragile
    assert mark == FRAGILE and off == ["k=4"]
    assert stability(_record(1.5, {}))[0] == NOT_ASSESSED


def test_the_scorecard_tabulates_rows_and_marks(tmp_path):
    claims.write_metrics(tmp_path / "coarse_to_fine", "coarse_to_fine",
                         {"coarse_to_fine": _record(1.5, {"k=2": -1.5, "k=4": 1.4, "cutoff=1/8 Nyquist": 1.2})}, {})
    rows = sc.collect(tmp_path, extensions=False, support=False)
    marks = sc.stability_marks(rows)
    assert marks["coarse_to_fine"] == (FRAGILE, ["k=2"])
    table = sc.sensitivity_table(rows)
    assert "**fragile** (k, cutoff)" in table and "| | | k=2 |" in table and "not reproduced ≠" in table
    assert "not measured" in table  # the other primary claims have no file here
    assert sc.scorecard_records(rows)["coarse_to_fine"]["stability"] == FRAGILE
