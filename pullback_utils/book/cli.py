"""``python -m pullback_utils.book``: run the chapters, run one chapter, build, check, print parameters.

Errors in the parameters are reported before any kernel starts, one line each, without a traceback
(exit status 2). While a chapter runs, plain progress lines (its cells, its bars, the time so far) are
printed, in a terminal and in a log alike; ``--quiet`` turns them off.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

import yaml

from pullback_utils.book.layout import Layout, find_root, normalise_name
from pullback_utils.book.pages import build
from pullback_utils.book.params import effective_overrides, load_param_groups, notebook_parameters, parse_cli_pairs
from pullback_utils.book.project import repository
from pullback_utils.book.runner import run, run_chapter
from pullback_utils.chapters.parameters import ParameterError

__all__ = ["main"]

_DESCRIPTION = "Run the chapter notebooks with papermill, then build the Jupyter Book (1.x)."
#: ``run --jobs`` defaults to the CPU count up to this (each chapter kernel holds its models and sweeps)
_MAX_DEFAULT_JOBS = 4


def _default_jobs() -> int:
    """Chapters run at once by default: one per CPU (the chapters use one thread each), at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, _MAX_DEFAULT_JOBS))


def _add_parameter_options(p: argparse.ArgumentParser, quick_help: str, model_map: bool = True) -> None:
    p.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="set a parameter (repeatable); VALUE is a YAML literal: 4, 1e-3, null, [0.7, 0.3], disks",
    )
    p.add_argument("--params", type=Path, metavar="FILE", help="YAML parameter groups {notebook|all: {param: value}}")
    p.add_argument("--quick", action="store_true", help=quick_help)
    if model_map:
        p.add_argument(
            "--model-map",
            action="append",
            metavar="ID=FOLDER",
            default=[],
            help="load model ID (e.g. a hub id of the parameter file) from FOLDER (repeatable; added to "
            "$PULLBACK_MODEL_MAP, which the chapter kernels inherit)",
        )


def _apply_model_map(entries: list[str]) -> None:
    """Merge ``--model-map`` entries into ``$PULLBACK_MODEL_MAP`` (checked: ParameterError naming the option)."""
    if not entries:
        return
    from pullback_utils.diffusion.model_map import MODEL_MAP_ENV, format_model_map, model_map, parse_model_map

    try:
        merged = {**model_map(), **parse_model_map(entries, "--model-map")}
    except ValueError as exc:
        raise ParameterError(str(exc)) from None
    os.environ[MODEL_MAP_ENV] = format_model_map(merged)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pullback_utils.book", description=_DESCRIPTION)
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="folder with _config.yml, book/ and notebooks/ (default: found from cwd)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="execute the chapter notebooks with papermill into book/generated/")
    p_run.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="run only these chapters, and the chapters that read their results (the scorecard)",
    )
    _add_parameter_options(p_run, "use the tiny parameters of book/params/quick.yaml")
    p_run.add_argument("--force", action="store_true", help="run even if the stamp says nothing changed")
    p_run.add_argument(
        "-q",
        "--quiet",
        "--no-progress",
        dest="quiet",
        action="store_true",
        help="no progress lines while chapters run (which cell, the bars, the time so far)",
    )
    p_run.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help=f"chapters run at once, each in its own kernel (default: the CPU count, at most "
        f"{_MAX_DEFAULT_JOBS}: {_default_jobs()} here); a chapter that reads others' results waits "
        "for them",
    )
    p_run.add_argument(
        "--cluster",
        default=None,
        metavar="WHERE",
        help="where the chapters' basis sweeps run: '' (in-process, the default), 'local:N' (a Ray "
        "cluster of N CPUs per chapter), 'auto', 'ray://HOST:PORT' or 'HOST:PORT' (pip install "
        "'pullback_utils[distributed]'); use either --jobs or a local cluster, not both",
    )

    p_ch = sub.add_parser("chapter", help="run one chapter (like papermill, with the runner's checks) into a folder")
    p_ch.add_argument("name", help="chapter (notebook) name")
    p_ch.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="DIR",
        help="output folder (default book/generated/NAME); new, empty or an earlier output",
    )
    _add_parameter_options(p_ch, "start from book/params/quick.yaml")
    p_ch.add_argument(
        "--force",
        action="store_true",
        help="run even if the folder's stamp says nothing changed, "
        "and replace the output of another chapter in that folder",
    )
    p_ch.add_argument(
        "-q",
        "--quiet",
        "--no-progress",
        dest="quiet",
        action="store_true",
        help="no progress lines while the chapter runs (which cell, the bars, the time so far)",
    )

    p_plan = sub.add_parser(
        "plan",
        help="print per chapter the bases, Jacobian products, peak memory and estimated "
        "time (this CPU and a GPU) of a run, without running anything",
    )
    p_plan.add_argument("--only", nargs="+", metavar="NAME", help="plan only these chapters")
    _add_parameter_options(p_plan, "use the tiny parameters of book/params/quick.yaml")
    p_plan.add_argument(
        "--gpu-tflops",
        type=float,
        default=None,
        metavar="R",
        help="sustained GPU rate in TFLOP/s for the GPU column (default: 400, an assumption)",
    )
    p_plan.add_argument(
        "--memory",
        type=float,
        default=None,
        metavar="GB",
        help="plan for this much free memory (e.g. a GPU's) instead of this machine's",
    )

    p_build = sub.add_parser("build", help="build the HTML book (execution off) into _build/html")
    p_build.add_argument("jb_args", nargs="*", help="extra arguments for jupyter-book build (after --)")
    p_build.add_argument(
        "--allow-warnings",
        action="store_true",
        help="do not treat Sphinx warnings as errors (the default fails the build on any warning)",
    )

    sub.add_parser("check", help="check the built book (_build/html): citations, warnings, figures, captions")

    p_params = sub.add_parser(
        "params", help="print one notebook's effective parameters as a flat YAML file (for papermill -f)"
    )
    p_params.add_argument("name", help="notebook name")
    _add_parameter_options(p_params, "start from book/params/quick.yaml")

    p_cell = sub.add_parser(
        "install-cell",
        help="print the first code cell every chapter notebook starts with "
        "(from repository.url and repository.branch of _config.yml)",
    )
    p_cell.add_argument(
        "--write",
        action="store_true",
        help="rewrite that cell in every notebook of notebooks/ (.md and .ipynb), e.g. after the "
        "repository setting changed",
    )
    return parser


def write_install_cells(layout: Layout, cell: str) -> list[Path]:
    """Make ``cell`` the first code cell of every notebook of ``notebooks/`` (the MyST ``.md`` source and
    its ``.ipynb`` pair); the files that changed. A notebook whose first code cell is not an install cell
    (``try: import pullback_utils``) is an error, not overwritten."""
    import jupytext
    import nbformat

    changed = []
    for path in sorted(layout.notebooks_dir.glob("*.md")) + sorted(layout.notebooks_dir.glob("*.ipynb")):
        nb = jupytext.read(path) if path.suffix == ".md" else nbformat.read(path, as_version=4)
        first = next((c for c in nb.cells if c.cell_type == "code"), None)
        if first is None or not first.source.startswith("try:\n    import pullback_utils"):
            raise RuntimeError(f"{path}: the first code cell is not the install cell; fix it by hand")
        if first.source != cell:
            if path.suffix == ".md":  # only the cell's text changes; the rest of the source stays as written
                text = path.read_text()
                path.write_text(text.replace(first.source, cell, 1))
            else:
                first.source = cell
                nbformat.write(nb, path)
            changed.append(path)
    return changed


def _summary(results) -> int:
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "skipped", "failed")}
    print(f"{counts['ok']} ran, {counts['skipped']} skipped, {counts['failed']} failed")
    for r in results:
        if r.status == "failed":
            print(f"  failed: {r.name}: {r.message}", file=sys.stderr)
    return 1 if counts["failed"] else 0


def _params(layout: Layout, args: argparse.Namespace) -> int:
    name = normalise_name(args.name)
    if not layout.notebook(name).is_file():
        raise ParameterError(f"no notebook {layout.notebook(name)}")
    files = ([layout.quick_params] if args.quick and layout.quick_params.is_file() else []) + (
        [args.params] if args.params else []
    )
    groups = [load_param_groups(f) for f in files]
    cli = parse_cli_pairs(args.parameter)
    if cli:
        groups.append({name: cli})
    overrides = effective_overrides(name, notebook_parameters(layout.notebook(name)), groups)
    print(yaml.safe_dump(overrides, sort_keys=False) if overrides else "{}", end="")
    return 0


def _plan(layout: Layout, args: argparse.Namespace) -> int:
    from pullback_utils.book.plan import DEFAULT_GPU_TFLOPS, format_plan, plan_chapters
    from pullback_utils.book.runner import chapter_values

    gpu = DEFAULT_GPU_TFLOPS if args.gpu_tflops is None else args.gpu_tflops
    if not gpu > 0:
        raise ParameterError(f"--gpu-tflops must be > 0, got {args.gpu_tflops}")
    if args.memory is not None and not args.memory > 0:
        raise ParameterError(f"--memory must be > 0 (GB), got {args.memory}")
    values = chapter_values(layout, args.only, args.params, args.quick, parse_cli_pairs(args.parameter), print)
    from pullback_utils.engine.jvp_memory import available_bytes

    available = int(args.memory * 1e9) if args.memory is not None else available_bytes("cpu")
    plans = plan_chapters(values, available=available, gpu_tflops=gpu)
    print(format_plan(plans, available=available, gpu_tflops=gpu))
    bad = [p for p in plans if not p.fits]
    for p in bad:
        print(
            f"error: {p.chapter}: {p.model} does not fit in the free memory even with blocks of one vector",
            file=sys.stderr,
        )
    return 2 if bad else 0


def _book_root(root: Path | None) -> Path:
    """The book folder: ``--root`` or the nearest one at or above the working folder; :class:`ParameterError`
    when it is not a book (so nothing is created in a folder that is not one)."""
    found = Path(root).expanduser() if root is not None else find_root()
    where = f"--root {root}" if root is not None else f"the working folder {Path.cwd()} (and the folders above it)"
    if not found.is_dir():
        raise ParameterError(f"--root {root}: no such folder")
    if not ((found / "_config.yml").is_file() and (found / "book").is_dir()):
        raise ParameterError(
            f"{where}: not a book (a book folder holds _config.yml and book/); run from inside the "
            "book's repository or pass --root FOLDER"
        )
    return found


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    layout = Layout(args.root or find_root())
    progress = not getattr(args, "quiet", True)
    say = functools.partial(print, flush=True)  # progress lines reach a log file as they happen
    try:
        layout = Layout(_book_root(args.root))
        if args.command == "install-cell":
            cell = repository(layout.config).install_cell
            if not args.write:
                print(cell)
                return 0
            for path in write_install_cells(layout, cell):
                print(f"rewrote the install cell of {path}")
            return 0
        if args.command == "build":
            return build(layout, args.jb_args, strict=not args.allow_warnings)
        if args.command == "check":
            from pullback_utils.book.checks import check_site  # reads figures with PIL: only when asked

            problems = check_site(layout.html, layout.generated)
            for page, issues in problems.items():
                for issue in issues:
                    print(f"{page}: {issue}")
            print(f"{sum(map(len, problems.values()))} problem(s) in {len(problems)} page(s) of {layout.html}")
            return 1 if problems else 0
        _apply_model_map(getattr(args, "model_map", []))
        if args.command == "params":
            return _params(layout, args)
        if args.command == "plan":
            return _plan(layout, args)
        if args.command == "chapter":
            result = run_chapter(
                layout,
                args.name,
                out_dir=args.output,
                params=args.params,
                quick=args.quick,
                overrides=parse_cli_pairs(args.parameter),
                force=args.force,
                progress=progress,
                log=say,
            )
            return _summary([result])
        jobs = _default_jobs() if args.jobs is None else args.jobs
        results = run(
            layout,
            only=args.only,
            params=args.params,
            quick=args.quick,
            force=args.force,
            progress=progress,
            overrides=parse_cli_pairs(args.parameter),
            jobs=jobs,
            cluster=args.cluster,
            log=say,
        )
        return _summary(results)
    except (ParameterError, RuntimeError) as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2
