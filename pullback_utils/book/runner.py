"""Run the chapter notebooks with papermill into ``book/generated/<name>/`` (or a folder of your choice).

``run`` executes ``notebooks/<name>.ipynb`` (in the order of ``book/_toc.yml``) into
``book/generated/<name>/``: the executed notebook, the figures it saves and its ``metrics.json``.
The kernel runs with ``cwd`` = that folder and the parameter ``output_dir = "."`` (when the notebook
declares it), so everything a chapter writes lands next to it, never next to the source notebook.
A chapter that declares ``results_dir`` gets the folder that holds every chapter's ``<name>/metrics.json``.

Parameters and their checks: :mod:`pullback_utils.book.params` (a bad name or type stops the whole run
before any kernel starts). Skipping unchanged chapters: :mod:`pullback_utils.book.stamps`. ``only``
runs the named chapters and the chapters that read their results (the scorecard); those are skipped
in turn when the results they read did not change.

Nothing in ``book/generated`` is left half-written: a notebook runs in a hidden temporary folder that
replaces ``<name>/`` only when it succeeded (the stamp inside it is written last). A failed run keeps
the previous good output and leaves the failed notebook in ``<name>.failed/`` with ``failure.json``;
the runner names the failing cell, carries on with the next notebook and reports it in the result.
"""

from __future__ import annotations

import contextlib
import difflib
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from pullback_utils._validate import check_int
from pullback_utils.book.execute import KERNEL_NAME, NotebookResult, _execute, _recover, _venv_kernel
from pullback_utils.book.layout import Layout, chapter_order, normalise_name
from pullback_utils.book.pages import write_statistics
from pullback_utils.book.parallel import _expected_seconds, read_durations, run_parallel
from pullback_utils.book.params import effective_overrides, load_param_groups, notebook_parameters
from pullback_utils.book.progress import Estimate
from pullback_utils.book.stamps import (
    STAMP,
    dependency_order,
    dependents,
    depends_on,
    inputs_digest,
    package_fingerprint,
    read_stamp,
    stale_outputs,
    stamp_key,
)
from pullback_utils.chapters.parameters import ParameterError

__all__ = ["NotebookResult", "KERNEL_NAME", "run", "run_chapter", "chapter_values", "check_plan_memory"]

Log = Callable[[str], Any]


@contextlib.contextmanager
def _lock(path: Path, remove: bool = False) -> Iterator[None]:
    """One runner at a time per output (an advisory lock on the file ``path``; ``remove``: delete it after)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RuntimeError(f"another runner is using {path.parent} (lock {path.name})") from None
        try:
            yield
        finally:
            if remove:
                path.unlink(missing_ok=True)


def _sources(
    layout: Layout, params: Path | str | None, quick: bool, cli: dict[str, Any] | None, log: Log
) -> list[tuple[str, dict[str, dict[str, Any]]]]:
    """The parameter groups in order: quick file, ``--params`` file, the command line (as ``all``). The model
    map (``$PULLBACK_MODEL_MAP``) is checked here too, before anything runs."""
    from pullback_utils.diffusion.model_map import model_map

    try:
        model_map()
    except ValueError as exc:
        raise ParameterError(str(exc)) from None
    sources: list[tuple[str, dict[str, dict[str, Any]]]] = []
    if quick:
        if layout.quick_params.is_file():
            sources.append((str(layout.quick_params), load_param_groups(layout.quick_params)))
        else:
            log(f"note: --quick but {layout.quick_params} does not exist; running with the notebooks' defaults")
    if params is not None:
        sources.append((str(params), load_param_groups(params)))
    if cli:
        sources.append(("-p", {"all": dict(cli)}))
    order, missing = chapter_order(layout)
    known = set(order) | set(missing)
    for source, group in sources:
        for gname in group:
            if gname != "all" and gname not in known:
                raise ParameterError(
                    f"{source}: unknown notebook group {gname!r}; groups: all, {', '.join(sorted(known))}"
                )
    return sources


def _plan_run(
    layout: Layout, names: list[str], sources: list[tuple[str, dict[str, dict[str, Any]]]], results_dir: str = ".."
) -> list[tuple[str, dict[str, Any]]]:
    """(name, effective overrides) of each chapter, in dependency order, all checked before anything runs.

    Raises :class:`ParameterError` with one line per problem. ``results_dir`` is what a chapter that
    declares that parameter gets (the folder of every chapter's output, seen from its own).
    """
    groups = [group for _, group in sources]
    plan: list[tuple[str, dict[str, Any]]] = []
    errors: list[str] = []
    declared: set[str] = set()
    typed: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for name in names:  # first the literal types, read from the notebooks alone (no torch)
        parameters = notebook_parameters(layout.notebook(name))
        declared |= set(parameters)
        try:
            typed.append((name, parameters, effective_overrides(name, parameters, groups)))
        except ParameterError as exc:
            errors.append(str(exc))
    if errors:
        raise ParameterError("\n".join(errors))
    for name, parameters, overrides in typed:  # then the values the chapters would refuse
        problems = _check_chapter_values(name, parameters, overrides)
        if problems:
            errors += problems
            continue
        if "output_dir" in parameters:
            overrides["output_dir"] = "."
        if "results_dir" in parameters:
            overrides["results_dir"] = results_dir
        plan.append((name, overrides))
    for source, group in sources:
        stray = [k for k in group.get("all", {}) if k not in declared]
        if stray and source != "-p":  # maybe declared by a notebook that `only` left out
            others = [n for n in chapter_order(layout)[0] if n not in names]
            declared |= {k for n in others for k in notebook_parameters(layout.notebook(n))}
            stray = [k for k in stray if k not in declared]
        if stray and names:
            what = "-p parameter(s)" if source == "-p" else f"{source}: 'all' parameter(s)"
            close = [m for k in stray for m in difflib.get_close_matches(k, sorted(declared), n=1)]
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            errors.append(f"{what} {', '.join(map(repr, stray))} are declared by none of: {', '.join(names)}{hint}")
    if errors:
        raise ParameterError("\n".join(errors))
    rank = {n: i for i, n in enumerate(dependency_order(layout, [n for n, _ in plan]))}
    return sorted(plan, key=lambda item: rank[item[0]])


_RUNNER_SET = {
    "output_dir": "the chapter's output folder: give it with -o/--output (book chapter) or run into "
    "book/generated (book run)",
    "results_dir": "the folder of every chapter's results, book/generated",
}


def _check_chapter_values(name: str, parameters: dict[str, Any], overrides: dict[str, Any]) -> list[str]:
    """The problems (one line each; ``[]``: none) of chapter ``name``'s effective parameters, found
    before a kernel starts: a parameter the runner sets itself (``output_dir``, ``results_dir``), a value of
    the right type that the chapter would refuse (:func:`pullback_utils.chapters.chapter.check_values`: ``k = 0``,
    ``tol = nan``, an unknown model, too few units for its tests, ...), or a cluster address where nothing
    answers."""
    problems = [
        f"{name}: parameter {key!r} is set by the runner ({why}); remove it"
        for key, why in _RUNNER_SET.items()
        if key in overrides and key in parameters
    ]
    if problems:
        return problems
    from pullback_utils.chapters.chapter import check_values  # torch is imported here, once, by the runner's process

    values = {k: p.default for k, p in parameters.items() if getattr(p, "literal", False)}
    values.update(overrides)
    try:
        check_values(name, values)
    except ValueError as exc:
        return [str(exc)]
    cluster = overrides.get("cluster")
    if isinstance(cluster, str):
        problem = _unreachable(cluster)
        if problem:
            return [f"{name}: cluster={cluster!r}: {problem}"]
    return []


def _unreachable(address: str) -> str | None:
    from pullback_utils.sweeps.ray_pool import unreachable

    if address not in _ADDRESS_CHECKED:
        _ADDRESS_CHECKED[address] = unreachable(address)
    return _ADDRESS_CHECKED[address]


_ADDRESS_CHECKED: dict[str, str | None] = {}


def _select(layout: Layout, only: Iterable[str] | None, log: Log) -> list[str]:
    order, missing = chapter_order(layout)
    for name in missing:
        log(f"note: chapter {name!r} is in {layout.toc.name} but notebooks/{name}.ipynb does not exist yet; skipped")
    if not only:
        return order
    wanted = [normalise_name(n) for n in only]
    for n in wanted:
        if n in missing:
            log(f"note: --only {n}: notebooks/{n}.ipynb does not exist yet; skipped")
        elif n not in order:
            raise ParameterError(f"--only {n}: no such notebook; notebooks: {', '.join(order) or '(none)'}")
    selected = [n for n in order if n in wanted]
    extra = dependents(layout, selected, order)
    for n in extra:
        read = [d for d in depends_on(layout, n, order) if d in selected or d in extra]
        log(f"note: {n} reads the results of {', '.join(read)}: it runs too (and is skipped if they did not change)")
    return [n for n in order if n in selected or n in extra]


def run(
    layout: Layout,
    only: Iterable[str] | None = None,
    params: Path | str | None = None,
    quick: bool = False,
    force: bool = False,
    progress: bool = True,
    log: Log = print,
    overrides: dict[str, Any] | None = None,
    jobs: int = 1,
    cluster: str | None = None,
    estimates: dict[str, Estimate] | None = None,
) -> list[NotebookResult]:
    """Execute the chapters; see the module docstring. ``overrides`` ({name: value}, the command line's
    ``-p``) apply to every selected chapter that declares them; ``force`` reruns the chapters of
    ``only`` (all when None), not the dependents that ``only`` adds. ``jobs`` chapters run at once (each
    in its own kernel; a chapter that reads others' results starts when they have finished, and the
    chapters that took longest last time start first). ``cluster`` is the ``cluster`` parameter of every
    chapter that declares one (:mod:`pullback_utils.sweeps.distributed`). ``progress``: lines through ``log`` while
    a chapter runs (its cells, its bars, the time so far: :mod:`pullback_utils.book.progress`), with the
    expected time from ``estimates`` ({chapter: :class:`Estimate`}), else from the chapter's last run with
    the same parameters, else from the plan (:func:`check_plan_memory`: products and sampling only).
    Raises :class:`ParameterError` on bad parameters (before any kernel starts). Returns one result per
    chapter run or skipped, in plan order."""
    try:
        jobs = check_int(jobs, "--jobs", 1)
    except ValueError as exc:
        raise ParameterError(str(exc)) from None
    names = _select(layout, only, log)
    forced = {normalise_name(n) for n in only} if only else set(names)  # --force: not the dependents
    plan = _plan_run(layout, names, _sources(layout, params, quick, overrides, log))
    planned = check_plan_memory(layout, plan, timing=progress)
    durations = read_durations(layout)  # a malformed book/durations.yaml is refused before any kernel, whatever --jobs
    if cluster is not None:
        plan = _with_cluster(layout, plan, cluster)
    chapters = chapter_order(layout)[0]
    fingerprint = package_fingerprint()
    with _lock(layout.generated / ".lock"), _venv_kernel():
        _recover(layout.generated)

        def one(name: str, chapter_overrides: dict[str, Any], say: Log, _bars: bool = True) -> NotebookResult:
            inputs = inputs_digest(layout, depends_on(layout, name, chapters))  # its inputs are final by now
            return _run_one(
                layout,
                name,
                chapter_overrides,
                fingerprint,
                inputs,
                layout.out_dir(name),
                force and name in forced,
                progress,
                say,
                (estimates or {}).get(name),
                planned.get(name),
            )

        if jobs == 1 or len(plan) < 2:
            results = [one(name, chapter_overrides, log, progress) for name, chapter_overrides in plan]
        else:
            results = run_parallel(layout, plan, chapters, jobs, one, log, durations)
    write_statistics(layout)  # the statistics page reads the stamps just written
    return results


def _with_cluster(layout: Layout, plan: list[tuple[str, dict[str, Any]]], cluster: str) -> list:
    from pullback_utils.sweeps.distributed import (
        check_cluster,  # no Ray import: the string is checked, nothing connects
    )

    try:
        cluster = check_cluster(cluster, "--cluster")
    except ValueError as exc:
        raise ParameterError(str(exc)) from None
    problem = _unreachable(cluster) if isinstance(cluster, str) else None
    if problem:
        raise ParameterError(f"--cluster {cluster}: {problem}")
    return [
        (name, {**o, "cluster": cluster} if "cluster" in notebook_parameters(layout.notebook(name)) else o)
        for name, o in plan
    ]


def _values(layout: Layout, plan: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """[(name, the notebook's literal defaults updated with the overrides)] of a plan."""
    out = []
    for name, overrides in plan:
        params = notebook_parameters(layout.notebook(name))
        values = {k: p.default for k, p in params.items() if getattr(p, "literal", False)}
        values.update(overrides)
        out.append((name, values))
    return out


def chapter_values(
    layout: Layout,
    only: Iterable[str] | None,
    params: Path | str | None,
    quick: bool,
    overrides: dict[str, Any] | None,
    log: Log = print,
) -> list[tuple[str, dict[str, Any]]]:
    """[(chapter, effective values)] of the chapters a ``run`` would execute, checked as ``run`` checks them."""
    names = _select(layout, only, log)
    return _values(layout, _plan_run(layout, names, _sources(layout, params, quick, overrides, log)))


#: where a planned estimate comes from, as the progress lines name it
PLAN_SOURCE = "the plan (products and sampling only)"


def check_plan_memory(
    layout: Layout, plan: list[tuple[str, dict[str, Any]]], timing: bool = False
) -> dict[str, Estimate]:
    """:class:`ParameterError` before any kernel starts when a chapter's model would not fit in the free memory
    even with blocks of one vector (:mod:`pullback_utils.book.plan`). With ``timing`` (seconds: the FLOP
    counts of the reference architectures) returns the plan's CPU estimate of each chapter it could time
    ({name: :class:`Estimate`}; products and DDIM trajectories only, not the other cells), else ``{}``."""
    from pullback_utils.book.plan import check_memory, plan_chapters
    from pullback_utils.engine.jvp_memory import available_bytes

    available = available_bytes("cpu")
    values = _values(layout, plan)
    try:
        plans = plan_chapters(values, available=available, timing=timing)
    except Exception:  # noqa: BLE001 - the planner's timing never stops a run; the memory check below still runs
        if not timing:
            raise
        plans = plan_chapters(values, available=available, timing=False)
    check_memory(plans, available)
    seconds: dict[str, float] = {}
    for row in plans:
        if row.cpu_seconds is not None:
            seconds[row.chapter] = seconds.get(row.chapter, 0.0) + row.cpu_seconds
    return {name: Estimate(s, PLAN_SOURCE) for name, s in seconds.items()}


def _run_one(
    layout: Layout,
    name: str,
    overrides: dict[str, Any],
    fingerprint: tuple[str, str],
    inputs: str,
    dest: Path,
    force: bool,
    progress: bool,
    log: Log,
    estimate: Estimate | None = None,
    planned: Estimate | None = None,
) -> NotebookResult:
    """Run or skip one chapter. The expected time shown: ``estimate`` when given, else the chapter's last
    run with the same parameters, else ``planned`` (the plan: products and sampling only)."""
    key = stamp_key(layout.notebook(name), overrides, *fingerprint, inputs=inputs)
    stamp = read_stamp(layout, name, dest)
    if not force and stamp and stamp.get("key") == key:
        stale = stale_outputs(dest, stamp)
        if not stale:
            log(f"skip {name}: notebook, parameters, package" + (" and inputs" if inputs else "") + " unchanged")
            return NotebookResult(name, "skipped", stamp.get("seconds", 0.0), overrides, "unchanged")
        log(f"rerun {name}: {'; '.join(stale)}")
    shown = {k: v for k, v in overrides.items() if k not in ("output_dir", "results_dir")}
    log(
        f"run  {name}" + (f" with {shown}" if shown else "") + (f" into {dest}" if dest != layout.out_dir(name) else "")
    )
    last = _expected_seconds(stamp or {}, overrides, 0.0)  # the ordering's rule: a run with these parameters
    if estimate is None and last:
        estimate = Estimate(last, "its last run with these parameters")
    estimate = estimate or planned
    result = _execute(layout, name, overrides, key, fingerprint, progress, dest, log, estimate)
    if result.status == "failed":
        kept = "previous output kept" if dest.exists() else "no previous output"
        log(f"FAILED {name}: {result.message}")
        log(f"       executed notebook: {dest.parent / (dest.name + '.failed') / (name + '.ipynb')} ({kept})")
    else:
        log(f"ok   {name} in {result.seconds:.1f} s")
    return result


def _check_destination(layout: Layout, dest: Path, name: str | None = None, force: bool = False) -> Path:
    """``dest`` resolved, or :class:`ParameterError` when it may not receive chapter ``name``'s output: not a
    folder, a folder with other files, one of the book's own folders, or (unless ``force``) another
    chapter's output (its stamp names another chapter, or it is another chapter's ``book/generated`` folder)."""
    dest = Path(dest).expanduser().resolve()
    if dest.exists() and not dest.is_dir():
        raise ParameterError(f"--output {dest}: exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / STAMP).is_file():
        raise ParameterError(
            f"--output {dest}: refusing to replace a folder that holds files other than a "
            f"chapter's output (no {STAMP}); give a new or empty folder"
        )
    if dest in (layout.root, layout.book_dir, layout.notebooks_dir, layout.generated):
        raise ParameterError(f"--output {dest}: give a folder of its own (e.g. {layout.out_dir('<name>')})")
    if name is not None and not force:
        owner = (read_stamp(layout, name, dest) or {}).get("notebook") if dest.is_dir() else None
        if (
            owner is None
            and dest.parent == layout.generated.resolve()
            and dest.name != name
            and dest.name in chapter_order(layout)[0]
        ):
            owner = dest.name
        if owner is not None and owner != name:
            raise ParameterError(
                f"--output {dest}: holds (or is the book's folder for) the output of chapter "
                f"{owner!r}; refusing to replace it with {name!r}. Give another folder, or pass "
                f"--force to replace it"
            )
    return dest


def run_chapter(
    layout: Layout,
    name: str,
    out_dir: Path | str | None = None,
    params: Path | str | None = None,
    quick: bool = False,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
    progress: bool = True,
    log: Log = print,
    estimate: Estimate | None = None,
) -> NotebookResult:
    """Run one chapter, like ``papermill`` with the runner's checks, into ``out_dir`` (default
    ``book/generated/<name>``; a new, empty or earlier chapter output folder, never the notebooks'
    folder). ``overrides`` must be declared by the chapter. Skipped when ``out_dir``'s stamp says
    nothing changed, unless ``force``; ``out_dir`` holding another chapter's output (or being another
    chapter's folder of ``book/generated``) is refused unless ``force``. ``progress`` and ``estimate``: as
    for :func:`run`."""
    name = normalise_name(name)
    order, _ = chapter_order(layout)
    if name not in order:
        raise ParameterError(f"no notebook {layout.notebook(name)}; notebooks: {', '.join(order) or '(none)'}")
    dest = _check_destination(layout, Path(out_dir) if out_dir else layout.out_dir(name), name, force)
    sources = _sources(layout, params, quick, None, log)
    if overrides:
        sources.append(("-p", {name: dict(overrides)}))
    results_dir = ".." if dest.parent == layout.generated else str(layout.generated)  # the book's results
    ((name, chapter_overrides),) = _plan_run(layout, [name], sources, results_dir=results_dir)
    planned = check_plan_memory(layout, [(name, chapter_overrides)], timing=progress).get(name)
    inputs = inputs_digest(layout, depends_on(layout, name, order))
    in_book = dest.parent == layout.generated
    lock = layout.generated / ".lock" if in_book else dest.parent / f".{dest.name}.lock"
    with _lock(lock, remove=not in_book), _venv_kernel():
        _recover(dest.parent, dest.name)
        result = _run_one(
            layout,
            name,
            chapter_overrides,
            package_fingerprint(),
            inputs,
            dest,
            force,
            progress,
            log,
            estimate,
            planned,
        )
    if in_book:
        write_statistics(layout)
    return result
