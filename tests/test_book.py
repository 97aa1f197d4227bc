"""The book runner (pullback_utils.book) on tiny throwaway notebooks in a temporary book."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import papermill
import pytest
import yaml

from pullback_utils import book
from pullback_utils.book import Layout, ParameterError, chapter_order, effective_overrides, load_param_groups, run

PARAMS_SRC = 'k = 3  # basis size\nmodel = "disks"  # bundled model\nrate = 0.5  # step\noutput_dir = "."  # where outputs go\n'
GOOD_BODY = [
    "import json, pathlib, sys",
    "pathlib.Path(output_dir, 'metrics.json').write_text(json.dumps({'k': k, 'rate': rate, 'python': sys.executable}))",
    "pathlib.Path(output_dir, 'figure.png').write_bytes(b'png')",
]


def make_notebook(path: Path, body: list[str], params: str = PARAMS_SRC) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# A chapter"), cell] + [nbformat.v4.new_code_cell(s) for s in body]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def layout(tmp_path) -> Layout:
    """A book with chapters `alpha`, `beta` and `gamma` in the TOC; only alpha and beta exist."""
    (tmp_path / "book" / "params").mkdir(parents=True)
    (tmp_path / "_config.yml").write_text("title: test\n")
    toc = {"format": "jb-book", "root": "intro", "chapters": [
        {"file": f"generated/{n}/{n}"} for n in ("beta", "alpha", "gamma")]}
    (tmp_path / "book" / "_toc.yml").write_text(yaml.safe_dump(toc))
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    (tmp_path / "book" / "params" / "quick.yaml").write_text("all: {k: 1}\nbeta: {rate: 0.25}\n")
    for name in ("alpha", "beta"):
        make_notebook(tmp_path / "notebooks" / f"{name}.ipynb", GOOD_BODY)
    return Layout(tmp_path)


@pytest.fixture
def fake_papermill(monkeypatch):
    """Replace papermill's execution by a copy that records its calls (no kernel)."""
    calls = []

    def execute(input_path, output_path, parameters=None, cwd=None, **kwargs):
        calls.append({"input": input_path, "output": output_path, "parameters": parameters, "cwd": cwd})
        nb = nbformat.read(input_path, as_version=4)
        injected = nbformat.v4.new_code_cell("# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in parameters.items()))
        injected.metadata["tags"] = ["injected-parameters"]
        nb.cells.insert(2, injected)
        nbformat.write(nb, output_path)
        Path(cwd, "metrics.json").write_text("{}")

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    return calls


def quiet_run(layout, **kwargs):
    return {r.name: r for r in run(layout, progress=False, log=lambda *_: None, **kwargs)}


# ------------------------------------------------------------------ chapters and parameters


def test_chapter_order_follows_the_toc_and_reports_missing(layout):
    make_notebook(layout.notebooks_dir / "extra.ipynb", GOOD_BODY)
    order, missing = chapter_order(layout)
    assert order == ["beta", "alpha", "extra"]
    assert missing == ["gamma"]


def test_param_groups_merge_all_then_notebook_then_later_files(tmp_path):
    defaults = {"k": 3, "rate": 0.5}
    quick = {"all": {"k": 1, "unused_elsewhere": 2}, "beta": {"rate": 0.25}}
    user = {"all": {"rate": 1}, "beta": {"k": 7}}
    assert effective_overrides("beta", defaults, [quick, user]) == {"k": 7, "rate": 1}
    assert effective_overrides("alpha", defaults, [quick]) == {"k": 1}  # `all` keys it lacks are ignored
    with pytest.raises(ParameterError, match=r"beta.ipynb: parameter 'k' must be int"):
        effective_overrides("beta", defaults, [{"beta": {"k": "seven"}}])

    bad = tmp_path / "bad.yaml"
    bad.write_text("beta: 3\n")
    with pytest.raises(ParameterError, match="expected groups"):
        load_param_groups(bad)
    with pytest.raises(ParameterError, match="not found"):
        load_param_groups(tmp_path / "missing.yaml")


@pytest.mark.parametrize("params, match", [
    ("beta: {lenght: 3}\n", r"beta.ipynb: unknown parameter 'lenght'; valid parameters: k \(int\), model \(str\)"),
    ("alpha: {k: 2.5}\n", r"alpha.ipynb: parameter 'k' must be int \(default 3\), got float 2.5"),
    ("betta: {k: 2}\n", r"unknown notebook group 'betta'"),
    ("all: {kk: 2}\n", r"'all' parameter\(s\) 'kk' are declared by none of"),
])
def test_bad_parameters_stop_the_run_before_any_kernel(layout, tmp_path, monkeypatch, params, match):
    def no_kernel(*args, **kwargs):
        raise AssertionError("a kernel was started despite bad parameters")

    monkeypatch.setattr(papermill, "execute_notebook", no_kernel)
    file = tmp_path / "p.yaml"
    file.write_text(params)
    with pytest.raises(ParameterError, match=match):
        quiet_run(layout, params=file)
    assert not list(layout.generated.glob("*/" + book.STAMP))


def test_cli_exits_2_and_names_the_parameter(layout, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("kernel started"))
    file = tmp_path / "p.yaml"
    file.write_text("alpha: {nsamples: 3}\n")
    assert book.main(["--root", str(layout.root), "run", "--params", str(file), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown parameter 'nsamples'" in err and "valid parameters: k (int)" in err


def test_only_rejects_unknown_names_and_skips_unwritten_chapters(layout, fake_papermill):
    with pytest.raises(ParameterError, match="--only delta: no such notebook"):
        quiet_run(layout, only=["delta"])
    assert quiet_run(layout, only=["gamma"]) == {}  # in the TOC, not written yet: a note, no error
    assert set(quiet_run(layout, only=["alpha.ipynb"])) == {"alpha"}


# ------------------------------------------------------------------ stamps and skipping


def test_unchanged_notebooks_are_skipped_and_changes_rerun(layout, fake_papermill, tmp_path):
    first = quiet_run(layout, quick=True)
    assert {n: r.status for n, r in first.items()} == {"beta": "ok", "alpha": "ok"}
    assert fake_papermill[0]["parameters"] == {"k": 1, "rate": 0.25, "output_dir": "."}  # quick: all + beta
    assert fake_papermill[1]["parameters"] == {"k": 1, "output_dir": "."}
    stamp = json.loads((layout.out_dir("beta") / book.STAMP).read_text())
    assert stamp["status"] == "ok" and stamp["overrides"]["rate"] == 0.25 and stamp["package_version"]

    assert {r.status for r in quiet_run(layout, quick=True).values()} == {"skipped"}
    assert len(fake_papermill) == 2

    # other parameters -> rerun (quick and default parameters differ too)
    assert quiet_run(layout)["beta"].status == "ok"
    # a changed notebook -> rerun that one only
    make_notebook(layout.notebook("alpha"), GOOD_BODY + ["print('changed')"])
    again = quiet_run(layout)
    assert again["alpha"].status == "ok" and again["beta"].status == "skipped"
    # --force reruns everything
    assert {r.status for r in quiet_run(layout, force=True).values()} == {"ok"}


def test_stamp_key_covers_notebook_parameters_and_package(layout):
    nb = layout.notebook("alpha")
    base = book.stamp_key(nb, {"k": 1}, "0.1.0", "abc")
    assert book.stamp_key(nb, {"k": 1}, "0.1.0", "abc") == base
    assert len({base, book.stamp_key(nb, {"k": 2}, "0.1.0", "abc"), book.stamp_key(nb, {"k": 1}, "0.2.0", "abc"),
                book.stamp_key(nb, {"k": 1}, "0.1.0", "abd")}) == 4
    version, source_hash = book.package_fingerprint()
    assert version and len(source_hash) == 64


# ------------------------------------------------------------------ atomic output


def test_execution_happens_in_a_hidden_folder_that_replaces_the_output(layout, fake_papermill, monkeypatch):
    quiet_run(layout, only=["alpha"])
    old = layout.out_dir("alpha")
    (old / "old-figure.png").write_bytes(b"x")
    seen = {}
    fake = papermill.execute_notebook

    def spy(input_path, output_path, parameters=None, cwd=None, **kwargs):
        seen["cwd"] = Path(cwd)
        seen["final_during_run"] = sorted(p.name for p in old.iterdir())
        fake(input_path, output_path, parameters=parameters, cwd=cwd, **kwargs)

    monkeypatch.setattr(papermill, "execute_notebook", spy)
    quiet_run(layout, only=["alpha"], force=True)
    assert seen["cwd"].parent == layout.generated and seen["cwd"].name.startswith(".alpha.run-")
    assert "old-figure.png" in seen["final_during_run"]  # the previous output was untouched while running
    assert not (old / "old-figure.png").exists()  # and then replaced as a whole
    assert sorted(p.name for p in old.iterdir()) == ["alpha.ipynb", "metrics.json", "stamp.json"]
    assert not [p for p in layout.generated.iterdir() if p.name.startswith(".alpha")]


def test_interrupted_swap_is_recovered(layout, fake_papermill):
    quiet_run(layout, only=["alpha"])
    # a crash between moving the good output aside and moving the new one in
    layout.out_dir("alpha").rename(layout.generated / ".alpha.old-1234")
    (layout.generated / ".alpha.run-5678").mkdir()
    assert quiet_run(layout, only=["alpha"])["alpha"].status == "skipped"  # restored, stamp intact
    assert not [p for p in layout.generated.iterdir() if p.name.startswith(".alpha")]


# ------------------------------------------------------------------ real kernels: failures and the kernel


def test_failed_cell_is_named_and_the_previous_output_kept(layout, capsys):
    assert quiet_run(layout, only=["alpha"])["alpha"].status == "ok"
    metrics = json.loads((layout.out_dir("alpha") / "metrics.json").read_text())
    assert metrics["python"] == sys.executable  # the kernel runs this interpreter
    executed = nbformat.read(layout.out_dir("alpha") / "alpha.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "hide-input" in injected[0].metadata.tags

    make_notebook(layout.notebook("alpha"), ["x = 1", "y = k + 1\nraise ValueError(f'boom {y}')", "print('never')"])
    results = run(layout, progress=False, log=lambda *_: None)  # alpha fails, beta still runs
    by_name = {r.name: r for r in results}
    assert by_name["beta"].status == "ok"
    failed = by_name["alpha"]
    assert failed.status == "failed"
    # cell 4 of the source notebook: markdown, parameters, `x = 1`, then the failing one
    assert failed.message.startswith("cell 4 (In [")
    assert "`y = k + 1`" in failed.message and "ValueError: boom 4" in failed.message
    out = capsys.readouterr().out
    assert "FAILED alpha: cell 4" in out and "previous output kept" in out

    # the good output is still there, the failed notebook next to it
    assert json.loads((layout.out_dir("alpha") / "metrics.json").read_text())["k"] == 3
    assert (layout.generated / "alpha.failed" / "alpha.ipynb").is_file()
    failure = json.loads((layout.generated / "alpha.failed" / book.FAILURE).read_text())
    assert failure["status"] == "failed" and "boom" in failure["message"]
    stats = (layout.generated / "execution_statistics.md").read_text()
    assert "| alpha | **failed**: cell 4" in stats and "| beta | ok |" in stats and "| gamma | not written yet |" in stats

    # the command line reports it and exits 1; fixing the notebook clears the failure
    assert book.main(["--root", str(layout.root), "run", "--only", "alpha", "--no-progress"]) == 1
    make_notebook(layout.notebook("alpha"), GOOD_BODY)
    assert book.main(["--root", str(layout.root), "run", "--only", "alpha", "--no-progress"]) == 0
    assert not (layout.generated / "alpha.failed").exists()


# ------------------------------------------------------------------ book pages


def test_toc_keeps_only_executed_chapters(layout, fake_papermill):
    quiet_run(layout, only=["alpha"])
    toc = yaml.safe_load(book.write_toc(layout).read_text())
    assert [c["file"] for c in toc["chapters"]] == ["generated/alpha/alpha"]
    assert toc["root"] == "intro"


def test_api_page_lists_the_package_modules(layout):
    text = book.write_api_page(layout).read_text()
    assert ".. automodule:: pullback_utils.solvers" in text and ".. automodule:: pullback_utils.book" in text


def test_launch_buttons_point_at_the_source_notebook():
    app = SimpleNamespace(config={"html_theme_options": {"path_to_docs": "book"}})
    url = "https://colab.research.google.com/github/o/r/blob/main/book/generated/editing/editing.ipynb"
    binder = "https://mybinder.org/v2/gh/o/r/main?urlpath=tree/book/generated/editing/editing.ipynb"
    context = {"header_buttons": [{"type": "group", "buttons": [{"url": url}, {"url": binder}]}]}
    book._rewrite_launch_urls(app, "generated/editing/editing", "page.html", context, None)
    urls = [b["url"] for b in context["header_buttons"][0]["buttons"]]
    assert urls == ["https://colab.research.google.com/github/o/r/blob/main/notebooks/editing.ipynb",
                    "https://mybinder.org/v2/gh/o/r/main?urlpath=tree/notebooks/editing.ipynb"]


def test_chapter_reading_others_results_runs_after_them_and_reruns_when_they_change(layout, fake_papermill):
    nb = make_notebook(layout.notebooks_dir / "a_score.ipynb", ["print(results_dir)"],
                       params='results_dir = "book/generated"  # where the chapters are\noutput_dir = "."  # outputs\n')
    data = json.loads(nb.read_text())
    data["metadata"]["pullback_book"] = {"depends_on": ["alpha"]}
    nb.write_text(json.dumps(data))
    layout.notebook("alpha").write_text(layout.notebook("alpha").read_text())  # (alpha sorts after a_score)

    # a_score is not in the TOC: it runs after the TOC's chapters anyway, and after alpha
    assert [r.name for r in run(layout, progress=False, log=lambda *_: None)] == ["beta", "alpha", "a_score"]
    assert fake_papermill[-1]["parameters"] == {"results_dir": "..", "output_dir": "."}
    assert {r.status for r in quiet_run(layout).values()} == {"skipped"}

    (layout.out_dir("alpha") / "metrics.json").write_text('{"fabricated": 1}')
    statuses = {n: r.status for n, r in quiet_run(layout).items()}
    assert statuses == {"beta": "skipped", "alpha": "skipped", "a_score": "ok"}

    # and the book lists it although book/_toc.yml does not (yet)
    toc = yaml.safe_load(book.write_toc(layout).read_text())
    assert [c["file"] for c in toc["chapters"]] == ["generated/beta/beta", "generated/alpha/alpha",
                                                   "generated/a_score/a_score"]


def test_dependency_order(layout):
    def depend(name, deps):
        data = json.loads(layout.notebook(name).read_text())
        data["metadata"]["pullback_book"] = {"depends_on": deps}
        layout.notebook(name).write_text(json.dumps(data))

    make_notebook(layout.notebooks_dir / "score.ipynb", GOOD_BODY)
    depend("alpha", ["beta"])
    depend("score", "*")
    assert book.depends_on(layout, "score", ["score", "alpha", "beta"]) == ["alpha", "beta"]
    assert book._dependency_order(layout, ["score", "alpha", "beta"]) == ["beta", "alpha", "score"]


def test_params_command_prints_a_flat_file_for_papermill(layout, tmp_path, capsys):
    file = tmp_path / "p.yaml"
    file.write_text("all: {rate: 2.0}\nbeta: {k: 5}\n")
    assert book.main(["--root", str(layout.root), "params", "beta", "--quick", "--params", str(file)]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == {"k": 5, "rate": 2.0}
    file.write_text("beta: {k: five}\n")
    assert book.main(["--root", str(layout.root), "params", "beta", "--params", str(file)]) == 2
    assert "parameter 'k' must be int" in capsys.readouterr().err


def test_defaults_include_lines_papermill_cannot_parse(tmp_path):
    nb = make_notebook(tmp_path / "n.ipynb", [], params='k = 3  # size\ncache = "~/.c"  # cache ("" = none)\n'
                       'device = "cuda" if False else "cpu"  # not a literal\n')
    assert book.notebook_defaults(nb) == {"k": 3, "cache": "~/.c", "device": None}
    effective_overrides("n", book.notebook_defaults(nb), [{"n": {"cache": "", "device": 0}}])
