"""Parameter checks of the papermill notebooks (pullback_utils.notebook)."""

from __future__ import annotations

import pytest

from pullback_utils.notebook import ParameterError, check_parameters, parse_assignments, validate_overrides

PARAMS = 'model = "disks"  # bundled model\nk = 10  # basis size\ntol = 1e-3  # solver tol\nquick = False  # small run\n'


def test_parse_assignments_reads_literals_only():
    assert parse_assignments(PARAMS) == {"model": "disks", "k": 10, "tol": 1e-3, "quick": False}


def test_injected_values_override_defaults():
    injected = '# Parameters\nk = 3\ntol = 1\n'
    got = check_parameters(["import x", PARAMS, injected, "check_parameters()"])
    assert got == {"model": "disks", "k": 3, "tol": 1, "quick": False}


def test_no_injection_returns_defaults():
    assert check_parameters(["import x", PARAMS, "check_parameters()"])["k"] == 10


@pytest.mark.parametrize("injected, match", [
    ('# Parameters\nlenght = 3\n', r"unknown parameter 'lenght'; valid parameters: model \(str\), k \(int\)"),
    ('# Parameters\nk = "ten"\n', r"parameter 'k' must be int \(default 10\), got str 'ten'"),
    ('# Parameters\nk = 2.5\n', r"parameter 'k' must be int"),
    ('# Parameters\nquick = 1\n', r"parameter 'quick' must be bool"),
])
def test_bad_parameters_are_named(injected, match):
    with pytest.raises(ParameterError, match=match):
        check_parameters([PARAMS, injected, "check_parameters()"])


def test_validate_overrides_for_the_runner():
    validate_overrides({"k": 10}, {"k": 4})
    with pytest.raises(ParameterError, match="unknown parameter 'j'"):
        validate_overrides({"k": 10}, {"j": 4}, notebook="editing.ipynb")
