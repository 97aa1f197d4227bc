"""Parameter checks of the papermill notebooks (pullback_utils.chapters.parameters)."""

from __future__ import annotations

import json

import pytest

from pullback_utils.chapters.parameters import (
    ParameterError,
    check_parameters,
    parse_assignments,
    parse_parameters,
    validate_overrides,
)

PARAMS = (
    'model = "disks"  # bundled model\nk = 10  # basis size\ntol = 1e-3  # solver tol\nquick = False  # small run\n'
)


def test_parse_assignments_reads_literals_only():
    assert parse_assignments(PARAMS) == {"model": "disks", "k": 10, "tol": 1e-3, "quick": False}


def test_injected_values_override_defaults():
    injected = "# Parameters\nk = 3\ntol = 1\n"
    got = check_parameters(["import x", PARAMS, injected, "check_parameters()"])
    assert got == {"model": "disks", "k": 3, "tol": 1, "quick": False}


def test_no_injection_returns_defaults():
    assert check_parameters(["import x", PARAMS, "check_parameters()"])["k"] == 10


@pytest.mark.parametrize(
    "injected, match",
    [
        (
            "# Parameters\nlenght = 3\n",
            r"unknown parameter 'lenght' \(value 3\); valid parameters: model \(str\), k \(int\)",
        ),
        ('# Parameters\nk = "ten"\n', r"parameter 'k' must be int \(default 10\), got str 'ten'"),
        ("# Parameters\nk = 2.5\n", r"parameter 'k' must be int"),
        ("# Parameters\nquick = 1\n", r"parameter 'quick' must be bool"),
    ],
)
def test_bad_parameters_are_named(injected, match):
    with pytest.raises(ParameterError, match=match):
        check_parameters([PARAMS, injected, "check_parameters()"])


def test_validate_overrides_for_the_runner():
    validate_overrides({"k": 10}, {"k": 4})
    with pytest.raises(ParameterError, match="unknown parameter 'j'"):
        validate_overrides({"k": 10}, {"j": 4}, notebook="editing.ipynb")


# ------------------------------------------------------------------ typed parameters cells

TYPED = (
    "from typing import Optional\n"
    "k: int = 8  # basis size\n"
    'tol: float = 0.01  # tolerance # with a hash and "quotes"\n'
    "max_iters: Optional[int] = None  # cap\n"
    "times: list[float] = [0.9, 0.5]  # t/T\n"
    'gamma: "float | None" = None  # string annotation\n'
    'device = "cuda" if False else "cpu"  # not a literal\n'
)


def test_parse_parameters_reads_annotations_and_help():
    params = parse_parameters(TYPED)
    assert list(params) == ["k", "tol", "max_iters", "times", "gamma", "device"]
    assert params["tol"].help == 'tolerance # with a hash and "quotes"'
    assert {n: p.expected() for n, p in params.items()} == {
        "k": "int",
        "tol": "float",
        "max_iters": "int or None",
        "times": "list of float",
        "gamma": "float or None",
        "device": "any",
    }
    assert not params["device"].literal and params["device"].source == "'cuda' if False else 'cpu'"


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"k": None}, r"'k' must be int \(default 8\), got None"),
        ({"tol": "1e-3"}, r"'tol' must be float .*got str '1e-3' \(YAML 1.1 reads an unquoted 1e-3 as a string"),
        ({"times": [0.5, "x"]}, r"'times' must be list of float"),
        ({"max_iters": 2.5}, r"'max_iters' must be int or None"),
        ({"n_sample": 3}, r"unknown parameter 'n_sample' \(value 3\)"),
    ],
)
def test_typed_checks(overrides, match):
    with pytest.raises(ParameterError, match=match):
        validate_overrides(parse_parameters(TYPED), overrides, notebook="c.ipynb")


def test_typed_checks_accept_what_the_annotation_allows():
    validate_overrides(
        parse_parameters(TYPED), {"k": 3, "tol": 1, "max_iters": None, "times": (1, 0.5), "gamma": 0.5, "device": 0}
    )
    validate_overrides({"k": 10, "quick": False}, {"k": 3})  # plain defaults, as before


def test_did_you_mean():
    with pytest.raises(ParameterError, match=r"did you mean 'n_samples'\?"):
        validate_overrides({"n_samples": 5, "k": 2}, {"nsamples": 3})


def test_parameter_error_renders_as_one_line_in_ipython():
    err = ParameterError("c.ipynb: parameter 'k' must be int (default 8), got None")
    assert err._render_traceback_() == ["ParameterError: c.ipynb: parameter 'k' must be int (default 8), got None"]


# ------------------------------------------------------------------ check_parameters returns plain values

CHECK = "params = pu.chapters.parameters.check_parameters()\nprint(params)"


def test_non_literal_defaults_come_back_as_plain_values():
    """Before: `device` came back as an _Unparsed object, and write_metrics(params=...) failed on it."""
    got = check_parameters(["import x", TYPED, CHECK], namespace={"device": "cpu"})
    assert got["device"] == "cpu" and json.loads(json.dumps(got)) == got
    got = check_parameters(["import x", TYPED, CHECK], namespace={"device": object()})
    assert got["device"] == "'cuda' if False else 'cpu'"  # not plain: its source text
    assert json.dumps(check_parameters([TYPED, CHECK]))


def test_rerunning_cells_in_jupyter_finds_the_parameters_cell_again():
    """In Jupyter a reader re-runs the check cell after other cells (or the parameters cell after the
    check): the parameters cell is the latest cell made only of assignments, not the previous cell."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        for source in [
            "import pullback_utils as pu\nimport pullback_utils.chapters.parameters",
            PARAMS,
            "first = pu.chapters.parameters.check_parameters()",
            "radius = len(model) * k\nlabel = f'{model}-{radius}'",  # an analysis cell
            "again = pu.chapters.parameters.check_parameters()",
            PARAMS.replace("k = 10", "k = 4"),  # the reader edits and re-runs the parameters cell
            "edited = pu.chapters.parameters.check_parameters()",
        ]:
            result = shell.run_cell(source, store_history=True)
            assert result.success, result.error_in_exec
        ns = shell.user_ns
        assert ns["first"] == ns["again"] == {"model": "disks", "k": 10, "tol": 1e-3, "quick": False}
        assert ns["edited"]["k"] == 4
        json.dumps(ns["again"])
    finally:
        InteractiveShell.clear_instance()


def test_no_parameters_cell_is_a_clear_error():
    with pytest.raises(ParameterError, match="no parameters cell was run before this cell"):
        check_parameters(["import x", "y = f(x)", CHECK])


def test_glue_stores_without_showing_in_the_book_and_shows_elsewhere(tmp_path, monkeypatch):
    """Chapter.glue: myst-nb's glue with display=False when myst-nb is there; a visible line otherwise."""
    import sys

    import IPython.display
    from IPython.display import Markdown

    from pullback_utils.chapters import chapter

    ch = chapter.setup("local_basis_tutorial", {"output_dir": str(tmp_path), "cache_dir": ""})
    shown = []
    import myst_nb.ext.glue

    record = lambda *objs, **kw: shown.append((objs, kw))  # noqa: E731
    monkeypatch.setattr(IPython.display, "display", record)
    monkeypatch.setattr(myst_nb.ext.glue, "ipy_display", record)
    ch.glue("share", 0.0667)
    (bundle,), kw = shown[-1]
    assert kw["raw"] and kw["metadata"]["scrapbook"] == {
        "name": "share",
        "mime_prefix": "application/papermill.record/",
    }
    assert bundle == {"application/papermill.record/text/plain": "0.0667"}  # stored, not shown

    monkeypatch.setitem(sys.modules, "myst_nb", None)  # no myst-nb: import fails
    ch.glue("share", 0.0667)
    ch.glue("sentence", Markdown("rises *then* falls"))
    assert [objs[0].data for objs, _ in shown[-2:]] == ["`share` = 0.0667", "`sentence` = rises *then* falls"]


def test_a_dict_parameter_takes_only_str_keyed_mappings():
    params = parse_parameters("settings: dict = {}  # overrides\n")
    validate_overrides(params, {"settings": {"n_steps": 2}})
    validate_overrides(params, {"settings": {}})
    for bad, got in (({1: 2}, "dict"), ([("n_steps", 2)], "list"), (None, "None")):
        with pytest.raises(ParameterError, match=rf"'settings' must be dict .*got {got}"):
            validate_overrides(params, {"settings": bad}, notebook="c.ipynb")
