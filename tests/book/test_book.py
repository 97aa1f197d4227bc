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
from pullback_utils.book.sphinx_ext import _rewrite_launch_urls
from pullback_utils.book.stamps import dependency_order

PARAMS_SRC = (
    'k = 3  # basis size\nmodel = "disks"  # bundled model\nrate = 0.5  # step\noutput_dir = "."  # where outputs go\n'
)
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
    toc = {
        "format": "jb-book",
        "root": "intro",
        "chapters": [{"file": f"generated/{n}/{n}"} for n in ("beta", "alpha", "gamma")],
    }
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

    def execute(input_path, output_path, parameters=None, resources=None, **kwargs):
        assert "cwd" not in kwargs  # papermill's cwd= chdirs the whole runner (shared by parallel chapters)
        cwd = resources["metadata"]["path"]  # the kernel's working directory (nbclient)
        calls.append({"input": input_path, "output": output_path, "parameters": parameters, "cwd": cwd})
        nb = nbformat.read(input_path, as_version=4)
        injected = nbformat.v4.new_code_cell(
            "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in parameters.items())
        )
        injected.metadata["tags"] = ["injected-parameters"]
        nb.cells.insert(2, injected)
        nbformat.write(nb, output_path)
        Path(cwd, "metrics.json").write_text(json.dumps(parameters, sort_keys=True))

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


@pytest.mark.parametrize(
    "params, match",
    [
        (
            "beta: {lenght: 3}\n",
            r"beta.ipynb: unknown parameter 'lenght' \(value 3\); valid parameters: k \(int\), model \(str\)",
        ),
        ("alpha: {k: 2.5}\n", r"alpha.ipynb: parameter 'k' must be int \(default 3\), got float 2.5"),
        ("betta: {k: 2}\n", r"unknown notebook group 'betta'"),
        ("all: {kk: 2}\n", r"'all' parameter\(s\) 'kk' are declared by none of"),
    ],
)
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
    assert (
        len(
            {
                base,
                book.stamp_key(nb, {"k": 2}, "0.1.0", "abc"),
                book.stamp_key(nb, {"k": 1}, "0.2.0", "abc"),
                book.stamp_key(nb, {"k": 1}, "0.1.0", "abd"),
            }
        )
        == 4
    )
    version, source_hash = book.package_fingerprint()
    assert version and len(source_hash) == 64


# ------------------------------------------------------------------ atomic output


def test_execution_happens_in_a_hidden_folder_that_replaces_the_output(layout, fake_papermill, monkeypatch):
    quiet_run(layout, only=["alpha"])
    old = layout.out_dir("alpha")
    (old / "old-figure.png").write_bytes(b"x")
    seen = {}
    fake = papermill.execute_notebook

    def spy(input_path, output_path, parameters=None, resources=None, **kwargs):
        seen["cwd"] = Path(resources["metadata"]["path"])
        seen["final_during_run"] = sorted(p.name for p in old.iterdir())
        fake(input_path, output_path, parameters=parameters, resources=resources, **kwargs)

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


def test_failed_cell_is_named_and_the_previous_output_kept(layout):
    assert quiet_run(layout, only=["alpha"])["alpha"].status == "ok"
    metrics = json.loads((layout.out_dir("alpha") / "metrics.json").read_text())
    assert metrics["python"] == sys.executable  # the kernel runs this interpreter
    executed = nbformat.read(layout.out_dir("alpha") / "alpha.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "remove-cell" in injected[0].metadata.tags

    make_notebook(layout.notebook("alpha"), ["x = 1", "y = k + 1\nraise ValueError(f'boom {y}')", "print('never')"])
    logged: list[str] = []
    results = run(layout, progress=False, log=logged.append)  # alpha fails, beta still runs
    by_name = {r.name: r for r in results}
    assert by_name["beta"].status == "ok"
    failed = by_name["alpha"]
    assert failed.status == "failed"
    # cell 4 of the source notebook: markdown, parameters, `x = 1`, then the failing one
    assert failed.message.startswith("cell 4 (In [")
    assert "`y = k + 1`" in failed.message and "ValueError: boom 4" in failed.message
    out = "\n".join(logged)
    assert "FAILED alpha: cell 4" in out and "previous output kept" in out

    # the good output is still there, the failed notebook next to it
    assert json.loads((layout.out_dir("alpha") / "metrics.json").read_text())["k"] == 3
    assert (layout.generated / "alpha.failed" / "alpha.ipynb").is_file()
    failure = json.loads((layout.generated / "alpha.failed" / book.FAILURE).read_text())
    assert failure["status"] == "failed" and "boom" in failure["message"]
    stats = (layout.generated / "execution_statistics.md").read_text()
    assert (
        "| alpha | **failed**: cell 4" in stats and "| beta | ok |" in stats and "| gamma | not written yet |" in stats
    )

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
    assert (
        ".. automodule:: pullback_utils.engine.solvers" in text and ".. automodule:: pullback_utils.book.runner" in text
    )
    assert ".. automodule:: pullback_utils.book\n" not in text  # the package itself defines nothing


def test_launch_buttons_point_at_the_source_notebook():
    app = SimpleNamespace(config={"html_theme_options": {"path_to_docs": "book"}})
    url = "https://colab.research.google.com/github/o/r/blob/main/book/generated/editing/editing.ipynb"
    binder = "https://mybinder.org/v2/gh/o/r/main?urlpath=tree/book/generated/editing/editing.ipynb"
    context = {"header_buttons": [{"type": "group", "buttons": [{"url": url}, {"url": binder}]}]}
    _rewrite_launch_urls(app, "generated/editing/editing", "page.html", context, None)
    urls = [b["url"] for b in context["header_buttons"][0]["buttons"]]
    assert urls == [
        "https://colab.research.google.com/github/o/r/blob/main/notebooks/editing.ipynb",
        "https://mybinder.org/v2/gh/o/r/main?urlpath=tree/notebooks/editing.ipynb",
    ]


def test_chapter_reading_others_results_runs_after_them_and_reruns_when_they_change(layout, fake_papermill):
    nb = make_notebook(
        layout.notebooks_dir / "a_score.ipynb",
        ["print(results_dir)"],
        params='results_dir = "book/generated"  # where the chapters are\noutput_dir = "."  # outputs\n',
    )
    data = json.loads(nb.read_text())
    data["metadata"]["pullback_book"] = {"depends_on": ["alpha"]}
    nb.write_text(json.dumps(data))
    layout.notebook("alpha").write_text(layout.notebook("alpha").read_text())  # (alpha sorts after a_score)

    # a_score is not in the TOC: it runs after the TOC's chapters anyway, and after alpha
    assert [r.name for r in run(layout, progress=False, log=lambda *_: None)] == ["beta", "alpha", "a_score"]
    assert fake_papermill[-1]["parameters"] == {"results_dir": "..", "output_dir": "."}
    assert {r.status for r in quiet_run(layout).values()} == {"skipped"}

    # alpha's results change (other parameters): a_score reads them, so it reruns; beta does not
    params = layout.root / "p.yaml"
    params.write_text("alpha: {k: 2}\n")
    statuses = {n: r.status for n, r in quiet_run(layout, params=params).items()}
    assert statuses == {"beta": "skipped", "alpha": "ok", "a_score": "ok"}
    assert {r.status for r in quiet_run(layout, params=params).values()} == {"skipped"}

    # and the book lists it although book/_toc.yml does not (yet)
    toc = yaml.safe_load(book.write_toc(layout).read_text())
    assert [c["file"] for c in toc["chapters"]] == [
        "generated/beta/beta",
        "generated/alpha/alpha",
        "generated/a_score/a_score",
    ]


def test_dependency_order(layout):
    def depend(name, deps):
        data = json.loads(layout.notebook(name).read_text())
        data["metadata"]["pullback_book"] = {"depends_on": deps}
        layout.notebook(name).write_text(json.dumps(data))

    make_notebook(layout.notebooks_dir / "score.ipynb", GOOD_BODY)
    depend("alpha", ["beta"])
    depend("score", "*")
    assert book.depends_on(layout, "score", ["score", "alpha", "beta"]) == ["alpha", "beta"]
    assert dependency_order(layout, ["score", "alpha", "beta"]) == ["beta", "alpha", "score"]


def test_params_command_prints_a_flat_file_for_papermill(layout, tmp_path, capsys):
    file = tmp_path / "p.yaml"
    file.write_text("all: {rate: 2.0}\nbeta: {k: 5}\n")
    assert book.main(["--root", str(layout.root), "params", "beta", "--quick", "--params", str(file)]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == {"k": 5, "rate": 2.0}
    file.write_text("beta: {k: five}\n")
    assert book.main(["--root", str(layout.root), "params", "beta", "--params", str(file)]) == 2
    assert "parameter 'k' must be int" in capsys.readouterr().err


def test_defaults_include_lines_papermill_cannot_parse(tmp_path):
    nb = make_notebook(
        tmp_path / "n.ipynb",
        [],
        params='k = 3  # size\ncache = "~/.c"  # cache ("" = none)\n'
        'device = "cuda" if False else "cpu"  # not a literal\n',
    )
    assert book.notebook_defaults(nb) == {"k": 3, "cache": "~/.c", "device": None}
    effective_overrides("n", book.notebook_defaults(nb), [{"n": {"cache": "", "device": 0}}])


def test_kernel_log_stays_out_of_the_runner_output(layout, capfd):
    """The kernel's own log ([IPKernelApp] ERROR | ...) goes to the chapter's kernel.log, not the terminal."""
    body = GOOD_BODY + [
        "from ipykernel.kernelapp import IPKernelApp\nIPKernelApp.instance().log.error('kernel-noise 42')",
        "print('visible output')",
    ]
    make_notebook(layout.notebook("alpha"), body)
    assert quiet_run(layout, only=["alpha"])["alpha"].status == "ok"
    captured = capfd.readouterr()
    assert "kernel-noise" not in captured.err + captured.out
    assert "kernel-noise 42" in (layout.out_dir("alpha") / "kernel.log").read_text()
    executed = nbformat.read(layout.out_dir("alpha") / "alpha.ipynb", as_version=4)
    assert "visible output" in executed.cells[-1].outputs[0]["text"]  # the chapter's own output is untouched


# ------------------------------------------------------------------ runner friction (issues 13, 15)


def test_cli_p_values_are_yaml_literals(layout, fake_papermill):
    root = str(layout.root)
    assert book.main(["--root", root, "run", "-p", "k", "4", "-p", "rate", "1e-3", "--no-progress"]) == 0
    assert [c["parameters"] for c in fake_papermill] == [{"k": 4, "rate": 0.001, "output_dir": "."}] * 2
    assert book.main(["--root", root, "params", "beta", "-p", "rate", "2.5e-1"]) == 0


def test_unquoted_exponent_in_a_parameter_file_is_a_float(layout, fake_papermill, tmp_path):
    file = tmp_path / "p.yaml"
    file.write_text("beta: {rate: 1e-3}\nalpha: {rate: 5E+2}\n")
    assert load_param_groups(file) == {"beta": {"rate": 0.001}, "alpha": {"rate": 500.0}}
    quiet_run(layout, params=file)
    assert [c["parameters"]["rate"] for c in fake_papermill] == [0.001, 500.0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["-p", "k", "null"], "error: beta.ipynb: parameter 'k' must be int (default 3), got None"),
        (["-p", "k", "2.5"], "error: beta.ipynb: parameter 'k' must be int (default 3), got float 2.5"),
        (["-p", "kk", "2"], "error: -p parameter(s) 'kk' are declared by none of: beta, alpha; did you mean 'k'?"),
    ],
)
def test_cli_parameter_errors_are_one_line_each_and_start_no_kernel(layout, monkeypatch, capsys, args, message):
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("kernel started"))
    assert book.main(["--root", str(layout.root), "run", *args, "--no-progress"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == message and all(line.startswith("error: ") for line in err)
    assert "Traceback" not in "\n".join(err)


def test_parameter_error_needs_neither_torch_nor_papermill(layout):
    """`python -m pullback_utils.book run -p k null` answers from the notebook's JSON alone: no kernel,
    no torch, no papermill imported (these take seconds to import)."""
    import subprocess
    import time

    code = (
        "import sys; from pullback_utils.book.cli import main; rc = main(sys.argv[1:]); "
        "print(sorted(m for m in ('torch', 'papermill', 'diffusers', 'jupyter_client') if m in sys.modules)); "
        "sys.exit(rc)"
    )
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, "--root", str(layout.root), "run", "-p", "k", "null"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    seconds = time.perf_counter() - started
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[]"
    assert proc.stderr.splitlines()[0] == "error: beta.ipynb: parameter 'k' must be int (default 3), got None"
    print(f"parameter error reported in {seconds:.2f} s (interpreter start included)")


def test_deleted_metrics_makes_the_chapter_run_again(layout, fake_papermill):
    quiet_run(layout, only=["alpha"])
    (layout.out_dir("alpha") / "metrics.json").unlink()
    logged: list[str] = []
    assert run(layout, only=["alpha"], progress=False, log=logged.append)[0].status == "ok"
    assert "rerun alpha: metrics.json missing" in logged
    assert (layout.out_dir("alpha") / "metrics.json").is_file()
    assert quiet_run(layout, only=["alpha"])["alpha"].status == "skipped"


def test_only_also_runs_the_chapters_that_read_its_results(layout, fake_papermill):
    nb = make_notebook(
        layout.notebooks_dir / "score.ipynb",
        ["print(results_dir)"],
        params='results_dir = "book/generated"  # where the chapters are\n',
    )
    data = json.loads(nb.read_text())
    data["metadata"]["pullback_book"] = {"depends_on": "*"}
    nb.write_text(json.dumps(data))
    logged: list[str] = []
    results = run(layout, only=["alpha"], progress=False, log=logged.append)
    assert [r.name for r in results] == ["alpha", "score"]
    assert any(line.startswith("note: score reads the results of alpha") for line in logged)
    # beta's result is not among them: --only beta reruns score too, which sees beta's new metrics
    assert [r.status for r in quiet_run(layout, only=["beta"]).values()] == ["ok", "ok"]
    # --force reruns the named chapter; score, whose inputs did not change, is skipped
    assert {n: r.status for n, r in quiet_run(layout, only=["alpha"], force=True).items()} == {
        "alpha": "ok",
        "score": "skipped",
    }


def test_chapter_command_writes_only_into_its_output_folder(layout, fake_papermill, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    notebooks_before = sorted(p.name for p in layout.notebooks_dir.iterdir())
    assert book.main(["--root", str(layout.root), "chapter", "alpha", "-p", "k", "5", "-o", str(work / "out")]) == 0
    assert sorted(p.name for p in work.iterdir()) == ["out"]  # no lock, no temporary folder left beside it
    assert json.loads((work / "out" / "metrics.json").read_text())["k"] == 5
    assert sorted(p.name for p in layout.notebooks_dir.iterdir()) == notebooks_before
    assert Path(fake_papermill[-1]["cwd"]).parent == work
    # the same again is skipped; into the book's folder by default
    assert book.main(["--root", str(layout.root), "chapter", "alpha", "-p", "k", "5", "-o", str(work / "out")]) == 0
    assert len(fake_papermill) == 1
    assert book.main(["--root", str(layout.root), "chapter", "notebooks/alpha.ipynb"]) == 0
    assert (layout.out_dir("alpha") / "alpha.ipynb").is_file()


@pytest.mark.parametrize("target", ["user", "notebooks"])
def test_chapter_command_refuses_a_folder_that_is_not_an_output(layout, fake_papermill, tmp_path, capsys, target):
    folder = layout.notebooks_dir if target == "notebooks" else tmp_path / "mine"
    folder.mkdir(exist_ok=True)
    (folder / "keep.txt").write_text("mine")
    assert book.main(["--root", str(layout.root), "chapter", "alpha", "-o", str(folder)]) == 2
    assert "refusing to replace a folder" in capsys.readouterr().err
    assert (folder / "keep.txt").read_text() == "mine" and not fake_papermill


def test_chapter_command_checks_parameters_against_that_chapter(layout, fake_papermill, capsys):
    assert book.main(["--root", str(layout.root), "chapter", "alpha", "-p", "n_samples", "3"]) == 2
    assert capsys.readouterr().err.startswith("error: alpha.ipynb: unknown parameter 'n_samples' (value 3); ")


def test_failure_messages_are_whole():
    from papermill.exceptions import PapermillExecutionError

    from pullback_utils.book.execute import _describe_failure

    evalue = "no model " + " ".join(f"word{i}" for i in range(120)) + " or the id is wrong"
    exc = PapermillExecutionError(3, 4, "load_model('x')\nmore", "ModelNotFoundError", evalue, [])
    message = _describe_failure(exc, Path("/nonexistent.ipynb"))
    assert message == f"cell 4 (In [4]) `load_model('x')`: ModelNotFoundError: {evalue}"


def test_progress_bars_only_on_a_terminal(layout, monkeypatch):
    seen = []
    monkeypatch.setattr(
        papermill,
        "execute_notebook",
        lambda *a, **k: seen.append(k["progress_bar"]) or (_ for _ in ()).throw(RuntimeError("stop")),
    )
    book.main(["--root", str(layout.root), "run", "--only", "alpha"])  # pytest's stderr is not a terminal
    assert seen == [False]


ANNOTATED = (
    "from typing import Optional\nk: int = 3  # basis size\nmax_iters: Optional[int] = None  # cap (None: no cap)\n"
    'times: list[float] = [0.7, 0.3]  # t/T\nmodel = "disks"  # bundled model ("quoted" help is fine)\n'
)


def test_annotated_parameters_show_their_types_in_papermill_and_are_checked(tmp_path):
    nb = make_notebook(tmp_path / "n.ipynb", [], params=ANNOTATED)
    cell = nbformat.read(nb, as_version=4).cells[1]
    cell.metadata["tags"] = ["parameters", "hide-input"]  # the book's tags: hide-input does not matter
    shown = papermill.inspect_notebook(str(nb))
    assert {n: p["inferred_type_name"] for n, p in shown.items()} == {
        "k": "int",
        "max_iters": "Optional[int]",
        "times": "list[float]",
        "model": "None",
    }  # None: no annotation
    params = book.notebook_parameters(nb)
    effective_overrides("n", params, [{"n": {"max_iters": None, "k": 2, "times": [0.5, 1]}}])
    with pytest.raises(ParameterError, match=r"'max_iters' must be int or None \(default None\), got str 'x'"):
        effective_overrides("n", params, [{"n": {"max_iters": "x"}}])
    with pytest.raises(ParameterError, match=r"'times' must be list of float"):
        effective_overrides("n", params, [{"n": {"times": ["0.5"]}}])


# ------------------------------------------------------------------ one place for the repository's address


def test_repository_address_has_one_place(layout):
    repo = book.repository(REPO_ROOT / "_config.yml")
    assert repo.url.startswith("https://github.com/") and repo.branch
    layout.config.write_text((REPO_ROOT / "_config.yml").read_text())
    config = yaml.safe_load(book.pages.write_config(layout).read_text())
    assert config["repository"]["url"] == repo.url and config["repository"]["path_to_book"] == "book"
    install, cite = (p.read_text() for p in book.write_snippets(layout))
    assert f'pip install "pullback_utils[zoo] @ git+{repo.url}@{repo.branch}"' in install
    assert f"\\url{{{repo.url}}}" in cite and "@misc{pullback_book," in cite
    intro = (REPO_ROOT / "book" / "intro.md").read_text()
    assert "generated/snippets/install.md" in intro and "generated/snippets/cite.md" in intro


@pytest.mark.parametrize(
    "setting, match",
    [
        ({"path_to_book": "book"}, r"repository.url must be the book's GitHub address.*got None"),
        ({"url": "https://github.com/a/b/", "branch": "main"}, r"repository.url must be .*no trailing slash"),
        ({"url": "https://gitlab.com/a/b", "branch": "main"}, r"repository.url must be"),
        ({"url": "https://github.com/a/b"}, r"repository.branch must name the branch"),
    ],
)
def test_a_bad_repository_setting_is_named(layout, setting, match):
    layout.config.write_text(yaml.safe_dump({"title": "t", "repository": setting}))
    with pytest.raises(ParameterError, match=match):
        book.repository(layout.config)
    with pytest.raises(ParameterError, match=match):
        book.write_snippets(layout)


REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", REPO_NOTEBOOKS, ids=lambda p: p.stem)
def test_every_chapter_starts_with_the_install_cell(path):
    cells = nbformat.read(path, as_version=4).cells
    first = next(c for c in cells if c.cell_type == "code")
    assert first.source == book.repository(REPO_ROOT / "_config.yml").install_cell


def test_install_cell_is_valid_ipython_and_installs_only_when_missing():
    from IPython.core.inputtransformer2 import TransformerManager

    repo = book.repository(REPO_ROOT / "_config.yml")
    code = TransformerManager().transform_cell(repo.install_cell)
    calls = []
    namespace = {"get_ipython": lambda: type("Shell", (), {"run_line_magic": lambda self, *a: calls.append(a)})()}
    exec(compile(code, "<install cell>", "exec"), namespace)  # pullback_utils is importable here: no install
    assert calls == [] and "pullback_utils" in namespace
    assert "run_line_magic('pip'" in code and repo.url in code


def test_papermill_cell_problems_name_what_help_notebook_would_miss(tmp_path):
    from pullback_utils.book.params import papermill_cell_problems

    good = make_notebook(tmp_path / "good.ipynb", [], params=ANNOTATED.replace("model = ", "model: str = "))
    assert papermill_cell_problems(good) == []
    bad = make_notebook(
        tmp_path / "bad.ipynb",
        [],
        params='k = 3  # size\nm: int | None = None  # cap\nc: str = "x"  # cache ("" = none)\nq: int = 1\n',
    )
    assert papermill_cell_problems(bad) == [
        "k: no type for papermill (annotate it, e.g. 'k: int = 3')",
        "m: papermill cannot read this line (one '=' per line; annotations like Optional[int])",
        "c: papermill cannot read this line (one '=' per line; annotations like Optional[int])",
        "q: no help comment",
    ]


@pytest.mark.parametrize("path", REPO_NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_help_shows_every_parameter_with_its_type(path):
    from pullback_utils.book.params import papermill_cell_problems

    assert papermill_cell_problems(path) == []


# ------------------------------------------------------------------ chapters in parallel


def test_parallel_chapters_overlap_and_a_reader_waits_for_what_it_reads(layout, fake_papermill, monkeypatch):
    import threading
    import time

    nb = make_notebook(
        layout.notebooks_dir / "a_score.ipynb",
        ["print(results_dir)"],
        params='results_dir = "book/generated"  # where the chapters are\noutput_dir = "."  # outputs\n',
    )
    data = json.loads(nb.read_text())
    data["metadata"]["pullback_book"] = {"depends_on": ["alpha"]}
    nb.write_text(json.dumps(data))
    spans, record = {}, papermill.execute_notebook

    def slow(input_path, output_path, **kwargs):
        name = Path(input_path).stem
        start = time.perf_counter()
        time.sleep(1.0 if name == "alpha" else 0.3)
        record(input_path, output_path, **kwargs)
        spans[name] = (start, time.perf_counter(), threading.get_ident())

    monkeypatch.setattr(papermill, "execute_notebook", slow)
    import pullback_utils.chapters.chapter  # noqa: F401  (the value checks' first import, once per process: not parallelism)
    from pullback_utils.book.stamps import package_fingerprint

    package_fingerprint()  # parsed once per process (about a second): not what this test times

    started = time.perf_counter()
    results = run(layout, progress=False, log=lambda *_: None, jobs=2)
    wall = time.perf_counter() - started
    assert [r.name for r in results] == ["beta", "alpha", "a_score"] and {r.status for r in results} == {"ok"}
    (b0, b1, tb), (a0, a1, ta), (s0, _, _) = spans["beta"], spans["alpha"], spans["a_score"]
    assert b0 < a1 and a0 < b1 and tb != ta  # beta and alpha ran at the same time
    assert s0 >= a1  # the chapter that reads alpha's results started after alpha had finished
    assert wall < 1.0 + 0.3 + 0.9  # not 1.6 s of sleeping one after the other (plus the runner's work)
    # a second run skips them all, in parallel too
    msgs = []
    assert {r.status for r in run(layout, progress=False, log=msgs.append, jobs=2)} == {"skipped"}, msgs


def test_without_stamps_the_measured_durations_order_the_start(layout, monkeypatch):
    """A fresh clone has no stamps: book/durations.yaml starts its longest chapters first (the default build
    started its longest chapter last and ran it alone); a chapter it does not list starts after those it does.
    In book order (beta, alpha, extra) extra would start third; here it starts with alpha and beta waits."""
    import time

    make_notebook(layout.notebooks_dir / "extra.ipynb", ["x = 1"])
    (layout.book_dir / "durations.yaml").write_text("extra: 300\nalpha: 20.5\n")
    started: list[str] = []
    record = papermill.execute_notebook

    def slow(input_path, output_path, **kwargs):
        started.append(Path(input_path).stem)
        time.sleep(0.3)
        return record(input_path, output_path, **kwargs)

    monkeypatch.setattr(papermill, "execute_notebook", slow)
    assert {r.status for r in run(layout, progress=False, log=lambda *_: None, jobs=2)} == {"ok"}
    assert started[:2] in (["extra", "alpha"], ["alpha", "extra"]) and started[2] == "beta", started

    (layout.book_dir / "durations.yaml").write_text("alpha: fast\n")
    with pytest.raises(ParameterError, match=r"durations.yaml: 'alpha': 'fast' is not a number of seconds >= 0"):
        run(layout, progress=False, log=lambda *_: None, jobs=2, force=True)


def test_parallel_chapters_run_in_their_own_folders_with_real_kernels(layout):
    """Two chapters at once on real kernels: each writes into its own output folder, and the runner's
    own working directory is never changed (papermill's cwd= did, so one chapter's figures landed in
    the other's folder and a chapter failed on the other's removed folder)."""
    import os

    body = ["import os, time; time.sleep(3); open('where.txt', 'w').write(os.getcwd())"]
    for name in ("alpha", "beta"):
        make_notebook(layout.notebooks_dir / f"{name}.ipynb", body)
    before = os.getcwd()
    results = quiet_run(layout, jobs=2)
    assert os.getcwd() == before
    assert {results[n].status for n in ("alpha", "beta")} == {"ok"}, results
    for name in ("alpha", "beta"):
        where = Path((layout.out_dir(name) / "where.txt").read_text())
        assert where.parent == layout.generated and where.name.startswith(f".{name}.run-")


def test_jobs_and_cluster_are_checked_before_any_kernel(layout, monkeypatch, capsys):
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("kernel started"))
    with pytest.raises(ParameterError, match="--jobs must be an int >= 1, got 0"):
        quiet_run(layout, jobs=0)
    assert book.main(["--root", str(layout.root), "run", "--cluster", "local:0", "--no-progress"]) == 2
    assert "error: --cluster='local:0': local:N needs N >= 1 CPUs" in capsys.readouterr().err


def test_cluster_goes_to_the_chapters_that_declare_it(layout, fake_papermill):
    make_notebook(layout.notebook("alpha"), GOOD_BODY, params=PARAMS_SRC + 'cluster = ""  # where sweeps run\n')
    quiet_run(layout, cluster="local:2")
    assert {c["input"].rsplit("/", 1)[-1]: c["parameters"].get("cluster") for c in fake_papermill} == {
        "alpha.ipynb": "local:2",
        "beta.ipynb": None,
    }


def test_default_jobs_follow_the_cpus(monkeypatch):
    from pullback_utils.book import cli

    monkeypatch.setattr(cli.os, "sched_getaffinity", lambda pid: {0, 1})
    assert cli._default_jobs() == 2
    monkeypatch.setattr(cli.os, "sched_getaffinity", lambda pid: set(range(64)))
    assert cli._default_jobs() == cli._MAX_DEFAULT_JOBS


# ------------------------------------------------------------------ progress while a chapter runs (issue 28)

TQDM_BODY = [
    "from tqdm.auto import tqdm\nimport time",
    "for i in tqdm(range(4), desc='sampling', mininterval=0):\n    time.sleep(0.3)",
    "print('after the bar')",
]


def test_progress_lines_show_cells_bars_and_time_and_the_page_has_no_widget_state(layout, capfd):
    """`book chapter` prints the running cell (n/total and its first line) and the kernel's tqdm bar as text,
    with the elapsed time; the executed notebook holds neither the bar nor widget state; --quiet prints none."""
    make_notebook(layout.notebook("alpha"), TQDM_BODY)
    out_dir = layout.root / "out-alpha"
    assert book.main(["--root", str(layout.root), "chapter", "alpha", "-o", str(out_dir)]) == 0
    out = capfd.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("  [alpha ")]
    assert any("kernel started, 5 code cells" in ln for ln in lines), out
    assert any("cell 2/5 `(parameters)`" in ln for ln in lines), out  # papermill's injected cell
    assert any("cell 4/5 `for i in tqdm(range(4), desc='sampling', mininterval=0):`" in ln for ln in lines), out
    bar = [ln for ln in lines if "sampling:" in ln]
    assert bar and "4/4" in bar[-1] and "100%" in bar[-1], out
    assert all(ln.startswith("  [alpha 0:") for ln in lines)  # the elapsed time, m:ss
    executed = nbformat.read(out_dir / "alpha.ipynb", as_version=4)
    assert "widgets" not in executed.metadata
    text = json.dumps([c.get("outputs", []) for c in executed.cells])
    assert "widget-view" not in text and "sampling" not in text and "after the bar" in text
    assert not (out_dir / "progress.log").exists()  # the side channel is not an output of the chapter

    assert book.main(["--root", str(layout.root), "chapter", "alpha", "-o", str(out_dir), "--force", "--quiet"]) == 0
    out = capfd.readouterr().out
    assert "[alpha" not in out and "ok   alpha" in out


def test_estimate_from_the_last_run_is_shown(layout):
    make_notebook(layout.notebook("alpha"), ["import time; time.sleep(0.2)"])
    assert quiet_run(layout, only=["alpha"])["alpha"].status == "ok"
    logged: list[str] = []
    run(layout, only=["alpha"], force=True, progress=True, log=logged.append)
    assert any("estimate 0:0" in ln and "from its last run with these parameters" in ln for ln in logged), logged


def test_a_first_run_shows_the_plans_estimate_and_a_rerun_its_last_run(layout, monkeypatch):
    """Without a previous run, the plan's CPU estimate (a lower bound) is shown; after one, the measured time."""
    from pullback_utils.book import plan as bp

    def planned(chapters, **_):
        return [bp.ChapterPlan(n, "m", 1, 10, 1, 0, 75.0, 0.1, True) for n, _ in chapters]

    monkeypatch.setattr(bp, "plan_chapters", planned)
    make_notebook(layout.notebook("alpha"), ["import time; time.sleep(0.2)"])
    logged: list[str] = []
    assert run(layout, only=["alpha"], progress=True, log=logged.append)[0].status == "ok"
    assert any("estimate 1:15 from the plan (products and sampling only)" in ln for ln in logged), logged
    logged.clear()
    run(layout, only=["alpha"], force=True, progress=True, log=logged.append)
    assert any("from its last run with these parameters" in ln for ln in logged), logged
    assert not any("from the plan" in ln for ln in logged), logged


def test_a_failing_planner_does_not_stop_a_run(layout, monkeypatch):
    """The plan's timing is a courtesy: when it fails (e.g. a mapped reference model without a config) the run
    goes on with the memory check alone."""
    from pullback_utils.book import plan as bp

    real = bp.plan_chapters

    def fragile(chapters, **kwargs):
        if kwargs.get("timing", True):
            raise AssertionError("no config for a reference architecture")
        return real(chapters, **kwargs)

    monkeypatch.setattr(bp, "plan_chapters", fragile)
    make_notebook(layout.notebook("alpha"), ["x = 1"])
    logged: list[str] = []
    assert run(layout, only=["alpha"], progress=True, log=logged.append)[0].status == "ok"
    assert not any("from the plan" in ln for ln in logged), logged


def test_a_stamp_orders_only_runs_with_its_parameters():
    from pullback_utils.book.parallel import _expected_seconds

    stamp = {"seconds": 3.0, "overrides": {"k": 1}}
    assert _expected_seconds(stamp, {"k": 1}, 400.0) == 3.0
    assert _expected_seconds(stamp, {}, 400.0) == 400.0  # a --quick stamp says little about a default run
    assert _expected_seconds({}, {}, 400.0) == 400.0


def test_a_killed_kernel_is_reported_with_its_signal_cell_and_memory(layout):
    make_notebook(layout.notebook("alpha"), ["x = 1", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"])
    logged: list[str] = []
    result = run(layout, only=["alpha"], progress=False, log=logged.append)[0]
    assert result.status == "failed"
    msg = result.message
    assert msg.startswith("Kernel died: killed by signal 9 (SIGKILL) in cell 4/4 `import os, signal`"), msg
    assert "the kernel's peak memory was" in msg and "not near the memory limit" in msg, msg
    assert not any(ln.startswith("  [alpha") for ln in logged)  # progress=False: quiet


def test_death_report_names_memory_and_the_settings_that_lower_it(monkeypatch, tmp_path):
    """A SIGKILL with the kernel at the memory limit reads as the OOM killer, with the settings to change."""
    import signal

    from pullback_utils.book import progress

    watch = progress.ChapterWatch("big", tmp_path / "progress.log", print, echo=False)
    watch.process = SimpleNamespace(poll=lambda: -signal.SIGKILL, pid=-1)
    watch.cell_number, watch.code_cells, watch.cell_line = 7, 23, "basis = m.local_basis(x_t, t, k)"
    watch.last_bar = "block Krylov:   0%|          | 0/50"
    monkeypatch.setattr(progress, "memory_limit_bytes", lambda: 24_000_000_000)
    watch.peak_rss = 23_000_000_000
    msg = watch.death_report()
    assert msg.startswith("Kernel died: killed by signal 9 (SIGKILL) in cell 7/23 `basis = m.local_basis(x_t, t, k)`")
    assert "last progress: block Krylov" in msg and "23.0 GB of 24.0 GB" in msg
    assert (
        "most likely killed for memory" in msg and "PULLBACK_CHUNK_SIZE=4" in msg and "PULLBACK_JVP_MODE=forward" in msg
    )


def test_thebe_binder_settings_follow_the_repository_setting():
    from pullback_utils.book.sphinx_ext import _thebe_from_repository

    class Config(SimpleNamespace):
        def __contains__(self, name):
            return hasattr(self, name)

    config = Config(
        html_theme_options={"repository_url": "https://github.com/a/b", "repository_branch": "dev"}, thebe_config={}
    )
    _thebe_from_repository(None, config)
    assert config.thebe_config == {"repository_url": "https://github.com/a/b", "repository_branch": "dev"}
    config.thebe_config = {"repository_url": "https://github.com/x/y"}  # set explicitly: kept
    _thebe_from_repository(None, config)
    assert config.thebe_config["repository_url"] == "https://github.com/x/y"
