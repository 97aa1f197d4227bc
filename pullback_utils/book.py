"""Run the chapter notebooks with papermill, then build the Jupyter Book (1.x) with execution off.

    python -m pullback_utils.book run [--only NAME ...] [--params FILE] [--quick] [--force]
    python -m pullback_utils.book build
    python -m pullback_utils.book params NAME [--params FILE] [--quick]   # flat YAML for papermill -f

``run`` executes ``notebooks/<name>.ipynb`` (in the order of ``book/_toc.yml``) into
``book/generated/<name>/``: the executed notebook, the figures it saves and its ``metrics.json``.
The kernel runs with ``cwd`` = that folder and the parameter ``output_dir = "."`` (when the notebook
declares it), so everything a chapter writes lands next to it.

Parameters, later groups winning: the notebook's own defaults; with ``--quick`` the ``all:`` and
``<name>:`` groups of ``book/params/quick.yaml``; then the same groups of ``--params FILE``. Every
override is checked against the notebook's parameters cell (``papermill.inspect_notebook``) with
:func:`pullback_utils.notebook.validate_overrides` before any kernel starts; a bad name or type stops
the whole run (exit 2) and names the parameter and the valid ones.

A chapter that reads other chapters' results (a scorecard) says so in its notebook metadata,
``{"pullback_book": {"depends_on": ["coarse_to_fine", ...]}}`` or ``"*"`` for all; it then runs after them
and reruns when their ``metrics.json`` changes. If it declares a ``results_dir`` parameter, the runner
sets it to ``".."``, the folder that holds every chapter's ``<name>/metrics.json``.

A notebook is skipped when its stamp (``book/generated/<name>/stamp.json``) records the same key:
hash of the notebook file, the effective overrides, the package version and the package's source
files (this module excluded), and the results it depends on. ``--force`` runs it anyway.

Nothing in ``book/generated`` is left half-written: a notebook runs in a hidden temporary folder that
replaces ``<name>/`` only when it succeeded (the stamp inside it is written last). A failed run keeps
the previous good output and leaves the failed notebook in ``<name>.failed/`` with ``failure.json``;
the runner names the failing cell, carries on with the next notebook and exits 1.

``build`` writes the execution-statistics page and the API reference into ``book/generated/``, a table
of contents that lists only the chapters that have an executed notebook (``book/generated/_toc.yml``,
made from ``book/_toc.yml``), and runs ``jupyter-book build book --config _config.yml`` into
``_build/html``.

This module is also a small Sphinx extension (listed in ``_config.yml``): it points the Colab and Binder
launch buttons of an executed chapter at its source notebook ``notebooks/<name>.ipynb`` (the executed
copy is not in the repository).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

from .notebook import ParameterError, _Unparsed, parse_assignments, validate_overrides

__all__ = [
    "Layout",
    "NotebookResult",
    "chapter_order",
    "load_param_groups",
    "notebook_defaults",
    "effective_overrides",
    "stamp_key",
    "run",
    "build",
    "write_statistics",
    "write_toc",
    "write_api_page",
    "main",
]

KERNEL_NAME = "python3"
STAMP = "stamp.json"
FAILURE = "failure.json"
GENERATED_PREFIX = "generated/"


@dataclass(frozen=True)
class Layout:
    """Where a book's pieces live. ``root`` holds ``_config.yml``; the rest defaults relative to it."""

    root: Path
    notebooks_dir: Path | None = None
    book_dir: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve())
        if self.notebooks_dir is None:
            object.__setattr__(self, "notebooks_dir", self.root / "notebooks")
        if self.book_dir is None:
            object.__setattr__(self, "book_dir", self.root / "book")

    @property
    def generated(self) -> Path:
        return self.book_dir / "generated"

    @property
    def config(self) -> Path:
        return self.root / "_config.yml"

    @property
    def toc(self) -> Path:
        return self.book_dir / "_toc.yml"

    @property
    def quick_params(self) -> Path:
        return self.book_dir / "params" / "quick.yaml"

    @property
    def html(self) -> Path:
        return self.root / "_build" / "html"

    def notebook(self, name: str) -> Path:
        return self.notebooks_dir / f"{name}.ipynb"

    def out_dir(self, name: str) -> Path:
        return self.generated / name


def find_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) that holds ``_config.yml`` and ``book/``."""
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "_config.yml").is_file() and (folder / "book").is_dir():
            return folder
    return start


# --------------------------------------------------------------------------------------------------
# Chapters and parameters


def _toc_files(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key in ("root", "file"):
            if isinstance(node.get(key), str):
                yield node[key]
        for value in node.values():
            if isinstance(value, (list, dict)):
                yield from _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from _toc_files(item)


def _chapter_of(docname: str) -> str | None:
    """``generated/<name>/<name>`` -> ``<name>``; anything else -> None."""
    parts = docname.removesuffix(".ipynb").split("/")
    if len(parts) == 3 and parts[0] == "generated" and parts[1] == parts[2]:
        return parts[1]
    return None


def chapter_order(layout: Layout) -> tuple[list[str], list[str]]:
    """(chapters to run, chapters listed in the TOC whose notebook does not exist yet).

    Chapters are the TOC's ``generated/<name>/<name>`` entries in order, then any other notebook of
    ``notebooks/`` (alphabetically; they run but are not in the book until the TOC lists them).
    """
    listed: list[str] = []
    if layout.toc.is_file():
        for doc in _toc_files(yaml.safe_load(layout.toc.read_text()) or {}):
            name = _chapter_of(doc)
            if name and name not in listed:
                listed.append(name)
    present = {p.stem for p in layout.notebooks_dir.glob("*.ipynb")} if layout.notebooks_dir.is_dir() else set()
    order = [n for n in listed if n in present] + sorted(present - set(listed))
    return order, [n for n in listed if n not in present]


def load_param_groups(path: Path | str | None) -> dict[str, dict[str, Any]]:
    """Read a YAML file of parameter groups ``{notebook_name | "all": {param: value}}``."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"{path}: parameter file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParameterError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) or v is None for v in data.values()):
        raise ParameterError(
            f"{path}: expected groups of parameters, e.g. 'coarse_to_fine: {{n_samples: 100}}' or 'all: {{...}}'"
        )
    return {str(k): dict(v or {}) for k, v in data.items()}


def notebook_defaults(path: Path | str) -> dict[str, Any]:
    """The parameters cell's names and default values.

    Read by ``papermill.inspect_notebook`` and, because papermill skips lines it cannot parse (a quote
    inside the comment is enough), also by :func:`pullback_utils.notebook.parse_assignments` on the cell
    tagged ``parameters``, which sees every literal assignment. A default that is not a Python literal
    reads as None, which accepts an override of any type.
    """
    import nbformat
    import papermill

    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        params = papermill.inspect_notebook(str(path))
    defaults: dict[str, Any] = {}
    for name, info in params.items():
        try:
            defaults[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            defaults[name] = None
    cell = next((c for c in nbformat.read(str(path), as_version=4).cells
                 if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    from_cell = parse_assignments(cell.source) if cell is not None else {}
    ordered = {name: None if isinstance(value, _Unparsed) else value for name, value in from_cell.items()}
    return {**ordered, **{n: v for n, v in defaults.items() if n not in ordered}}


def effective_overrides(
    name: str, defaults: dict[str, Any], groups: Iterable[dict[str, dict[str, Any]]]
) -> dict[str, Any]:
    """Merge the ``all`` and ``name`` groups of each parameter file in turn (later ones win).

    An ``all`` value only applies to notebooks that declare that parameter; a ``name`` value must be a
    declared parameter of the right type (:class:`ParameterError` otherwise).
    """
    merged: dict[str, Any] = {}
    for group in groups:
        merged.update({k: v for k, v in group.get("all", {}).items() if k in defaults})
        merged.update(group.get(name, {}))
    validate_overrides(defaults, merged, notebook=f"{name}.ipynb")
    return merged


# --------------------------------------------------------------------------------------------------
# Stamps


def package_fingerprint() -> tuple[str, str]:
    """(package version, sha256 of the package's files other than this module and caches)."""
    from . import __version__

    pkg = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(pkg.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc" or path == Path(__file__).resolve():
            continue
        digest.update(path.relative_to(pkg).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return __version__, digest.hexdigest()


def stamp_key(notebook: Path, overrides: dict[str, Any], version: str, source_hash: str, inputs: str = "") -> str:
    """The skip key: notebook bytes, effective overrides, package version and source hash, and (for a
    chapter that reads others' results) the digest of those results."""
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(Path(notebook).read_bytes()).digest())
    digest.update(json.dumps(overrides, sort_keys=True, default=repr).encode())
    digest.update(version.encode() + b"\0" + source_hash.encode() + b"\0" + inputs.encode())
    return digest.hexdigest()


def depends_on(layout: Layout, name: str, chapters: list[str]) -> list[str]:
    """Chapters whose results ``name`` reads, from its notebook metadata
    ``{"pullback_book": {"depends_on": [names] | "*"}}`` ("*": every other chapter)."""
    meta = json.loads(layout.notebook(name).read_text()).get("metadata", {}).get("pullback_book", {})
    deps = meta.get("depends_on", [])
    if deps in ("*", ["*"]):
        return [n for n in chapters if n != name and not depends_on_all(layout, n)]
    return [d for d in deps if d in chapters and d != name]


def depends_on_all(layout: Layout, name: str) -> bool:
    meta = json.loads(layout.notebook(name).read_text()).get("metadata", {}).get("pullback_book", {})
    return meta.get("depends_on") in ("*", ["*"])


def _inputs_digest(layout: Layout, deps: list[str]) -> str:
    """Digest of the dependencies' current results: their stamp keys and ``metrics.json`` files."""
    digest = hashlib.sha256()
    for dep in sorted(deps):
        stamp = read_stamp(layout, dep) or {}
        metrics = layout.out_dir(dep) / "metrics.json"
        digest.update(f"{dep}\0{stamp.get('key', '')}\0".encode())
        digest.update(hashlib.sha256(metrics.read_bytes()).digest() if metrics.is_file() else b"-")
    return digest.hexdigest() if deps else ""


def _dependency_order(layout: Layout, names: list[str]) -> list[str]:
    """``names`` in their order, except that a chapter comes after the chapters it reads."""
    done: list[str] = []
    pending = list(names)
    while pending:
        for name in pending:
            if all(d in done or d not in pending for d in depends_on(layout, name, names)):
                done.append(name)
                pending.remove(name)
                break
        else:  # a cycle: keep the given order
            done += pending
            break
    return done


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=repr) + "\n")
    os.replace(tmp, path)


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_stamp(layout: Layout, name: str) -> dict[str, Any] | None:
    try:
        return json.loads((layout.out_dir(name) / STAMP).read_text())
    except (OSError, ValueError):
        return None


def read_failure(layout: Layout, name: str) -> dict[str, Any] | None:
    try:
        return json.loads((layout.generated / f"{name}.failed" / FAILURE).read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------------------
# Execution


@dataclass
class NotebookResult:
    name: str
    status: str  # "ok", "skipped", "failed"
    seconds: float = 0.0
    overrides: dict[str, Any] = field(default_factory=dict)
    message: str = ""


@contextlib.contextmanager
def _venv_kernel() -> Iterator[None]:
    """Make the ``python3`` kernel run this interpreter, whatever kernelspecs the machine has.

    A kernelspec in a folder first on ``JUPYTER_PATH`` wins over user and system ones.
    """
    old = os.environ.get("JUPYTER_PATH")
    with tempfile.TemporaryDirectory(prefix="pullback-kernel-") as tmp:
        spec = Path(tmp) / "kernels" / KERNEL_NAME
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                     "--IPKernelApp.log_level=ERROR"],
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
            "metadata": {"debugger": True},
        }))
        os.environ["JUPYTER_PATH"] = os.pathsep.join([tmp, old] if old else [tmp])
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = old


def _recover(layout: Layout) -> None:
    """Undo what an interrupted run left: restore a swapped-out good output, drop temporary folders."""
    if not layout.generated.is_dir():
        return
    for path in sorted(layout.generated.glob(".*.old-*")):
        name = path.name[1:].rsplit(".old-", 1)[0]
        if not layout.out_dir(name).exists():
            os.replace(path, layout.out_dir(name))
        else:
            shutil.rmtree(path, ignore_errors=True)
    for path in layout.generated.glob(".*.run-*"):
        shutil.rmtree(path, ignore_errors=True)


def _describe_failure(exc: BaseException, executed: Path) -> str:
    """One line naming the failed cell: its number in the source notebook, first line and the error."""
    from papermill.exceptions import PapermillExecutionError

    if not isinstance(exc, PapermillExecutionError):
        return f"{type(exc).__name__}: {exc}".strip()
    number = exc.cell_index + 1
    with contextlib.suppress(Exception):  # map the executed notebook's index back to the source's
        import nbformat

        cells = [c for c in nbformat.read(executed, as_version=4).cells
                 if "papermill-error-cell-tag" not in c.get("metadata", {}).get("tags", [])]
        injected = sum("injected-parameters" in c.get("metadata", {}).get("tags", []) for c in cells[: exc.cell_index])
        number = exc.cell_index - injected + 1
    first = next((line.strip() for line in (exc.source or "").splitlines() if line.strip()), "")
    if len(first) > 100:
        first = first[:97] + "..."
    evalue = " ".join(str(exc.evalue).split())
    if len(evalue) > 500:
        evalue = evalue[:497] + "..."
    return f"cell {number} (In [{exc.exec_count}]) `{first}`: {exc.ename}: {evalue}"


def _hide_injected_input(path: Path) -> None:
    """Tag papermill's injected-parameters cell ``hide-input`` so the page shows a toggle, not code."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "hide-input" not in tags:
            tags.append("hide-input")
    nbformat.write(nb, path)


def _execute(layout: Layout, name: str, overrides: dict[str, Any], key: str, fingerprint: tuple[str, str],
             progress: bool) -> NotebookResult:
    import papermill

    layout.generated.mkdir(parents=True, exist_ok=True)
    work = layout.generated / f".{name}.run-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    executed = work / f"{name}.ipynb"
    started = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(layout.notebook(name)), str(executed), parameters=overrides, cwd=str(work),
            kernel_name=KERNEL_NAME, progress_bar=progress, log_output=False,
        )
    except BaseException as exc:  # noqa: BLE001 - keep going past any notebook failure
        seconds = time.perf_counter() - started
        message = _describe_failure(exc, executed)
        failed = layout.generated / f"{name}.failed"
        _write_json_atomic(work / FAILURE, {
            "notebook": name, "status": "failed", "message": message, "seconds": round(seconds, 2),
            "overrides": overrides, "key": key, "finished": _now(),
        })
        shutil.rmtree(failed, ignore_errors=True)
        os.replace(work, failed)
        if isinstance(exc, KeyboardInterrupt):
            raise
        return NotebookResult(name, "failed", seconds, overrides, message)
    seconds = time.perf_counter() - started
    _hide_injected_input(executed)
    version, source_hash = fingerprint
    _write_json_atomic(work / STAMP, {
        "notebook": name, "status": "ok", "key": key, "overrides": overrides, "seconds": round(seconds, 2),
        "finished": _now(), "package_version": version, "package_source_sha256": source_hash,
    })
    final, old = layout.out_dir(name), layout.generated / f".{name}.old-{uuid.uuid4().hex[:8]}"
    if final.exists():
        os.replace(final, old)
    os.replace(work, final)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(layout.generated / f"{name}.failed", ignore_errors=True)
    return NotebookResult(name, "ok", seconds, overrides)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


@contextlib.contextmanager
def _lock(layout: Layout) -> Iterator[None]:
    """One runner at a time per book (an advisory lock on ``book/generated/.lock``)."""
    import fcntl

    layout.generated.mkdir(parents=True, exist_ok=True)
    with open(layout.generated / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RuntimeError(f"another runner is using {layout.generated}") from None
        yield


def _normalise_name(name: str) -> str:
    return Path(name).name.removesuffix(".ipynb")


def run(
    layout: Layout,
    only: Iterable[str] | None = None,
    params: Path | str | None = None,
    quick: bool = False,
    force: bool = False,
    progress: bool = True,
    log=print,
) -> list[NotebookResult]:
    """Execute the chapters; see the module docstring. Raises :class:`ParameterError` on bad parameters
    (before any kernel starts). Returns one result per chapter run or skipped."""
    from tqdm.auto import tqdm

    order, missing = chapter_order(layout)
    for name in missing:
        log(f"note: chapter {name!r} is in {layout.toc.name} but notebooks/{name}.ipynb does not exist yet; skipped")
    if only:
        wanted = [_normalise_name(n) for n in only]
        unknown = [n for n in wanted if n not in order]
        for n in unknown:
            if n in missing:
                log(f"note: --only {n}: notebooks/{n}.ipynb does not exist yet; skipped")
            else:
                raise ParameterError(f"--only {n}: no such notebook; notebooks: {', '.join(order) or '(none)'}")
        order = [n for n in order if n in wanted]

    sources: list[tuple[Path, dict[str, dict[str, Any]]]] = []
    if quick:
        if layout.quick_params.is_file():
            sources.append((layout.quick_params, load_param_groups(layout.quick_params)))
        else:
            log(f"note: --quick but {layout.quick_params} does not exist; running with the notebooks' defaults")
    if params is not None:
        sources.append((Path(params), load_param_groups(params)))
    known = set(chapter_order(layout)[0]) | set(missing)
    for source, group in sources:
        for gname in group:
            if gname != "all" and gname not in known:
                raise ParameterError(f"{source}: unknown notebook group {gname!r}; groups: all, {', '.join(sorted(known))}")
    groups = [group for _, group in sources]

    # validate everything before the first kernel starts
    plan: list[tuple[str, dict[str, Any]]] = []
    errors: list[str] = []
    declared: set[str] = set()
    for name in order:
        defaults = notebook_defaults(layout.notebook(name))
        declared |= set(defaults)
        try:
            overrides = effective_overrides(name, defaults, groups)
        except ParameterError as exc:
            errors.append(str(exc))
            continue
        if "output_dir" in defaults:
            overrides["output_dir"] = "."
        if "results_dir" in defaults:
            overrides["results_dir"] = ".."
        plan.append((name, overrides))
    rank = {n: i for i, n in enumerate(_dependency_order(layout, [n for n, _ in plan]))}
    plan.sort(key=lambda item: rank[item[0]])
    chapters = chapter_order(layout)[0]
    for source, group in sources:
        stray = [k for k in group.get("all", {}) if k not in declared]
        if stray:  # maybe declared by a notebook that --only left out
            present = chapter_order(layout)[0]
            declared |= {k for n in present if n not in order for k in notebook_defaults(layout.notebook(n))}
            stray = [k for k in stray if k not in declared]
        if stray and order:
            errors.append(f"{source}: 'all' parameter(s) {', '.join(map(repr, stray))} are declared by none of: {', '.join(order)}")
    if errors:
        raise ParameterError("\n".join(errors))

    results: list[NotebookResult] = []
    fingerprint = package_fingerprint()
    with _lock(layout), _venv_kernel():
        _recover(layout)
        bar = tqdm(plan, desc="notebooks", unit="nb", disable=not progress or not plan)
        for name, overrides in bar:
            bar.set_postfix_str(name)
            inputs = _inputs_digest(layout, depends_on(layout, name, chapters))
            key = stamp_key(layout.notebook(name), overrides, *fingerprint, inputs=inputs)
            stamp = read_stamp(layout, name)
            if not force and stamp and stamp.get("key") == key:
                results.append(NotebookResult(name, "skipped", stamp.get("seconds", 0.0), overrides, "unchanged"))
                tqdm.write(f"skip {name}: notebook, parameters, package" + (" and inputs" if inputs else "") + " unchanged")
                continue
            tqdm.write(f"run  {name}" + (f" with {overrides}" if overrides else ""))
            result = _execute(layout, name, overrides, key, fingerprint, progress)
            results.append(result)
            if result.status == "failed":
                kept = "previous output kept" if layout.out_dir(name).exists() else "no previous output"
                tqdm.write(f"FAILED {name}: {result.message}\n"
                           f"       executed notebook: {layout.generated / (name + '.failed') / (name + '.ipynb')} ({kept})")
            else:
                tqdm.write(f"ok   {name} in {result.seconds:.1f} s")
        bar.close()
    write_statistics(layout)
    return results


# --------------------------------------------------------------------------------------------------
# Book pages and build


def _rel(path: Path, layout: Layout) -> str:
    return path.relative_to(layout.book_dir).with_suffix("").as_posix()


def write_statistics(layout: Layout) -> Path:
    """``book/generated/execution_statistics.md``: one row per chapter, from the stamps."""
    order, missing = chapter_order(layout)
    rows = []
    for name in order + missing:
        stamp, failure = read_stamp(layout, name), read_failure(layout, name)
        if name in missing:
            rows.append((name, "not written yet", "", "", ""))
            continue
        if failure and (not stamp or failure.get("finished", "") >= stamp.get("finished", "")):
            status = "**failed**: " + failure.get("message", "")
            if stamp:
                status += f" (the page shows the run of {stamp.get('finished', '?')})"
            rec = failure
        elif stamp:
            status, rec = "ok", stamp
        else:
            rows.append((name, "not run", "", "", ""))
            continue
        shown = {k: v for k, v in rec.get("overrides", {}).items() if k != "output_dir"}
        params = ", ".join(f"`{k}={v!r}`" for k, v in shown.items()) or "defaults"
        rows.append((name, status, params, f"{rec.get('seconds', 0):.1f}", rec.get("finished", "")))
    lines = [
        "# Execution statistics",
        "",
        "How each chapter of this build was executed (written by `python -m pullback_utils.book`). Parameters",
        "are those that differ from the notebook's parameters cell; run time is wall-clock seconds.",
        "",
        "| chapter | status | parameters | run time (s) | executed |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |")
    if not rows:
        lines.append("| (no chapters yet) | | | | |")
    version, source_hash = package_fingerprint()
    lines += ["", f"Package: `pullback_utils` {version}, source sha256 `{source_hash[:12]}`.", ""]
    path = layout.generated / "execution_statistics.md"
    _write_text_atomic(path, "\n".join(lines))
    return path


def write_api_page(layout: Layout) -> Path:
    """``book/generated/api.md``: autodoc of the package's public modules (the ones that exist)."""
    import pkgutil

    import pullback_utils

    modules = sorted(m.name for m in pkgutil.iter_modules(pullback_utils.__path__) if not m.name.startswith("_"))
    zoo = Path(pullback_utils.__file__).parent / "zoo"
    zoo_modules = sorted(m.name for m in pkgutil.iter_modules([str(zoo)]) if not m.name.startswith("_")) if zoo.is_dir() else []
    lines = [
        "# API reference",
        "",
        "The public API is re-exported from the top-level package (`import pullback_utils as pu`); below,",
        "each module's functions and classes where they are defined. Generated with `sphinx.ext.autodoc`.",
        "",
    ]
    for mod in [m for m in modules if m != "zoo"] + [f"zoo.{m}" for m in zoo_modules]:
        lines += [f"## `pullback_utils.{mod}`", "", "```{eval-rst}", f".. automodule:: pullback_utils.{mod}",
                  "   :members:", "```", ""]
    path = layout.generated / "api.md"
    _write_text_atomic(path, "\n".join(lines))
    return path


def write_toc(layout: Layout) -> Path:
    """``book/generated/_toc.yml``: ``book/_toc.yml`` without the chapters that have no executed notebook."""
    toc = yaml.safe_load(layout.toc.read_text())

    def exists(doc: str) -> bool:
        if Path(doc).suffix in (".md", ".ipynb", ".rst"):
            return (layout.book_dir / doc).is_file()
        return any((layout.book_dir / (doc + ext)).is_file() for ext in (".md", ".ipynb", ".rst"))

    def prune(node: Any) -> Any:
        if isinstance(node, list):
            kept = [prune(item) for item in node]
            return [item for item in kept if item is not None]
        if isinstance(node, dict):
            if "file" in node and not exists(node["file"]):
                return None
            out = {k: (prune(v) if isinstance(v, list) else v) for k, v in node.items()}
            for key in ("chapters", "sections"):
                if key in out and not out[key]:
                    del out[key]
            if "parts" in out:
                out["parts"] = [p for p in out["parts"] if p.get("chapters")]
            return out
        return node

    pruned = prune(toc)
    listed = set(_toc_files(toc))
    extra = [f"generated/{n}/{n}" for n in chapter_order(layout)[0]
             if f"generated/{n}/{n}" not in listed and exists(f"generated/{n}/{n}.ipynb")]
    if extra:  # executed notebooks that book/_toc.yml does not list yet: append them to the chapters
        print(f"note: {', '.join(extra)} not in {layout.toc.name}; added at the end of the chapters")
        parts = pruned.get("parts")
        if parts is None:
            pruned.setdefault("chapters", []).extend({"file": f} for f in extra)
        else:
            part = next((p for p in parts if str(p.get("caption", "")).lower() == "chapters"), None)
            if part is None:
                part = {"caption": "Chapters", "chapters": []}
                parts.insert(0, part)
            part["chapters"].extend({"file": f} for f in extra)
    dropped = [n for n in _toc_files(toc) if n not in set(_toc_files(pruned))]
    for doc in dropped:
        name = _chapter_of(doc)
        print(f"note: {doc} is not in this build ({'chapter ' + repr(name) + ' has no executed notebook: run it first' if name else 'file missing'})")
    path = layout.generated / "_toc.yml"
    _write_text_atomic(path, "# Generated by `python -m pullback_utils.book build` from book/_toc.yml; do not edit.\n"
                       + yaml.safe_dump(pruned, sort_keys=False))
    return path


def build(layout: Layout, extra_args: Iterable[str] = ()) -> int:
    """Build the HTML book with execution off; returns jupyter-book's exit status."""
    layout.generated.mkdir(parents=True, exist_ok=True)
    write_statistics(layout)
    write_api_page(layout)
    toc = write_toc(layout)
    cmd = [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.argv[0] = 'jupyter-book'; main()",
           "build", str(layout.book_dir), "--config", str(layout.config), "--toc", str(toc),
           "--path-output", str(layout.root), *extra_args]
    started = time.perf_counter()
    status = subprocess.call(cmd, cwd=layout.root)
    print(f"book build: exit {status} in {time.perf_counter() - started:.1f} s; HTML in {layout.html}")
    return status


# --------------------------------------------------------------------------------------------------
# Sphinx extension: launch buttons of executed chapters open the source notebook


def _rewrite_launch_urls(app, pagename, templatename, context, doctree) -> None:
    name = _chapter_of(pagename)
    if not name:
        return
    prefix = app.config["html_theme_options"].get("path_to_docs", "").strip("/")
    executed = f"{prefix}/{pagename}.ipynb" if prefix else f"{pagename}.ipynb"
    source = f"notebooks/{name}.ipynb"

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: fix(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fix(v) for v in node]
        if isinstance(node, str):
            return node.replace(executed, source)
        return node

    if "header_buttons" in context:
        context["header_buttons"] = fix(context["header_buttons"])


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    """Drop repeated ``<script>`` entries: Jupyter Book 1 adds sphinx-thebe's inline configuration twice,
    (once with ``filename=None``, once with ``""``, so Sphinx's own de-duplication misses it), and the
    second ``const THEBE_JS_URL`` is a SyntaxError in the browser console on every page."""
    seen, kept = set(), []
    for js in context.get("script_files", []):
        key = (str(getattr(js, "filename", js) or ""), repr(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    context["script_files"] = kept


def local_mathjax_dir() -> Path | None:
    """The MathJax 3 ``es5`` folder of the ``django-static-mathjax`` package (a dependency of the book), or
    ``None`` when it is not installed."""
    try:
        import mathjax  # django-static-mathjax: MathJax 3.2.2 as package data, no other dependency
    except ImportError:
        return None
    folder = Path(mathjax.__file__).resolve().parent / "static" / "mathjax" / "es5"
    return folder if (folder / "tex-mml-chtml.js").is_file() else None


def _use_local_mathjax(app, config) -> None:
    """Serve MathJax from the book itself instead of a CDN, so that formulas render offline (a reader's
    laptop, this workplace, the browser test). Only when ``mathjax_path`` is still a web address (the
    Sphinx default) and the local copy exists; set ``sphinx.config.mathjax_path`` to override."""
    source = local_mathjax_dir()
    if source is None or not str(config.mathjax_path).startswith(("http://", "https://")):
        return
    config.mathjax_path = "mathjax/tex-mml-chtml.js"  # relative to _static
    app.pullback_mathjax_source = source


def _copy_mathjax(app, exception) -> None:
    source = getattr(app, "pullback_mathjax_source", None)
    if exception is None and source is not None and app.builder.format == "html":
        shutil.copytree(source, Path(app.outdir) / "_static" / "mathjax", dirs_exist_ok=True)


def setup(app):  # pragma: no cover - exercised by the book build
    app.connect("html-page-context", _rewrite_launch_urls, priority=502)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.connect("config-inited", _use_local_mathjax, priority=900)
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


# --------------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pullback_utils.book", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=None, help="folder with _config.yml, book/ and notebooks/ (default: found from cwd)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="execute the chapter notebooks with papermill into book/generated/")
    p_run.add_argument("--only", nargs="+", metavar="NAME", help="run only these notebooks")
    p_run.add_argument("--params", type=Path, metavar="FILE", help="YAML parameter groups {notebook|all: {param: value}}")
    p_run.add_argument("--quick", action="store_true", help="use the tiny parameters of book/params/quick.yaml")
    p_run.add_argument("--force", action="store_true", help="run even if the stamp says nothing changed")
    p_run.add_argument("--no-progress", action="store_true", help="no progress bars")
    p_build = sub.add_parser("build", help="build the HTML book (execution off) into _build/html")
    p_build.add_argument("jb_args", nargs="*", help="extra arguments for jupyter-book build (after --)")
    p_params = sub.add_parser("params", help="print one notebook's effective parameters as a flat YAML file "
                              "(for papermill -f)")
    p_params.add_argument("name", help="notebook name")
    p_params.add_argument("--params", type=Path, metavar="FILE", help="YAML parameter groups")
    p_params.add_argument("--quick", action="store_true", help="start from book/params/quick.yaml")
    args = parser.parse_args(argv)
    layout = Layout(args.root or find_root())

    if args.command == "build":
        return build(layout, args.jb_args)
    if args.command == "params":
        name = _normalise_name(args.name)
        try:
            if not layout.notebook(name).is_file():
                raise ParameterError(f"no notebook {layout.notebook(name)}")
            files = ([layout.quick_params] if args.quick and layout.quick_params.is_file() else []) + \
                ([args.params] if args.params else [])
            overrides = effective_overrides(name, notebook_defaults(layout.notebook(name)),
                                            [load_param_groups(f) for f in files])
        except ParameterError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(yaml.safe_dump(overrides, sort_keys=False) if overrides else "{}", end="")
        return 0
    try:
        results = run(layout, only=args.only, params=args.params, quick=args.quick, force=args.force,
                      progress=not args.no_progress)
    except ParameterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [r for r in results if r.status == "failed"]
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "skipped", "failed")}
    print(f"{counts['ok']} ran, {counts['skipped']} skipped, {counts['failed']} failed")
    for r in failed:
        print(f"  failed: {r.name}: {r.message}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
