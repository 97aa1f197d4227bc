"""Sensitivity rows: built with the claim's own rule, validated by the record contract, tabulated by the
scorecard with a stable/fragile mark per claim."""

from __future__ import annotations

import numpy as np
import pytest

from pullback_utils import claims
from pullback_utils.analysis import inference as inf
from pullback_utils.chapters import scorecard as sc
from pullback_utils.claims.sensitivity import FRAGILE, NOT_ASSESSED, STABLE, check_rows, row, stability


def _res(shift: float, n: int = 20, seed: int = 0) -> inf.TestResult:
    return inf.sign_flip_test(np.random.default_rng(seed).standard_normal(n) + shift, n_draws=999)


def _record(shift: float, sens_shifts: dict[str, float]) -> dict:
    rows = [row("coarse_to_fine", s, _res(v, seed=i + 1)) for i, (s, v) in enumerate(sens_shifts.items())]
    return claims.record(
        "coarse_to_fine",
        _res(shift),
        model="disks",
        baselines={"white_noise_low_share": 0.07},
        controls={"random_weights": 0.0},
        sensitivity=rows,
    )


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
    for broken, msg in (
        (dict(rec["sensitivity"][0], p_value=1.5), "lie in"),
        ({"setting": "k=2", "estimate": float("nan"), "p_value": 0.1, "verdict": "x"}, "finite"),
        ({"setting": "k=2", "estimate": 1.0}, "lacks"),
    ):
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
    claims.write_metrics(
        tmp_path / "coarse_to_fine",
        "coarse_to_fine",
        {"coarse_to_fine": _record(1.5, {"k=2": -1.5, "k=4": 1.4, "cutoff=1/8 Nyquist": 1.2})},
        {},
    )
    rows = sc.collect(tmp_path, extensions=False, support=False)
    marks = sc.stability_marks(rows)
    assert marks["coarse_to_fine"] == (FRAGILE, ["k=2"])
    table = sc.sensitivity_table(rows)
    assert "**fragile** (k, cutoff)" in table and "| | | k=2 |" in table and "not reproduced ≠" in table
    assert "not measured" in table  # the other primary claims have no file here
    assert sc.scorecard_records(rows)["coarse_to_fine"]["stability"] == FRAGILE


def test_a_non_significant_design_of_low_power_is_underpowered_and_the_contract_checks_it(tmp_path):
    res = inf.nested_trend_test(
        np.repeat([2, 3, 6, 9, 15], 3), np.repeat(range(5), 3), np.repeat([2, 1, 3, 4, 5.0], 3)
    )  # rho 0.9, p = 10/120
    assert inf.decide(res.p_value, res.estimate, "greater", min_p=res.min_p) == inf.INCONCLUSIVE
    rec = claims.record(
        "dataset_complexity",
        res,
        model="ladder",
        baselines={"spectrum_matched": 0.0},
        controls={"random_weights": 0.0},
        power=0.3,
        design_needed={"rungs": 8, "seeds": 3},
    )
    assert rec["verdict"] == inf.UNDERPOWERED
    assert (
        claims.record(
            "dataset_complexity",
            res,
            model="ladder",
            baselines={"spectrum_matched": 0.0},
            controls={"random_weights": 0.0},
            power=0.9,
        )["verdict"]
        == inf.INCONCLUSIVE
    )
    claims.write_metrics(tmp_path, "dataset_complexity", {"dataset_complexity": rec}, {})
    with pytest.raises(claims.MetricsError, match="power"):
        claims.write_metrics(tmp_path, "dataset_complexity", {"dataset_complexity": dict(rec, power=1.5)}, {})


def test_top_k_subsets_and_endpoints():
    import torch

    from pullback_utils.claims.sensitivity import endpoint_pairs, smaller_k, subset_times
    from pullback_utils.sweeps.bases import BasisSweep

    assert smaller_k(8) == [2, 4] and smaller_k(2) == [1] and smaller_k(1) == []
    assert endpoint_pairs([0.9, 0.7, 0.5, 0.3, 0.1]) == [(0.7, 0.1), (0.9, 0.3)]
    assert endpoint_pairs([0.9, 0.1]) == []
    assert subset_times([0.9, 0.5, 0.1], [0.1, 0.9]) == [2, 0]
    with pytest.raises(ValueError, match="not among"):
        subset_times([0.9, 0.1], [0.5])
    g = torch.Generator().manual_seed(0)
    sw = BasisSweep(
        v=torch.randn(2, 3, 4, 1, 4, 4, generator=g),
        u=torch.randn(2, 3, 4, 5, generator=g),
        s=torch.rand(2, 3, 4, generator=g),
        times=[900, 100],
    )
    top = sw.top(2)
    assert top.k == 2 and torch.equal(top.u, sw.u[:, :, :2]) and torch.equal(top.v, sw.v[:, :, :2])
    with pytest.raises(ValueError, match="k must be"):
        sw.top(5)
