"""Chapters in parallel: ``jobs`` chapter kernels at once, a chapter that reads others' results after them.

Each chapter runs in its own kernel process, so threads of the runner are enough to keep ``jobs`` of
them busy. Ready chapters start longest first (the seconds their last stamp records when it ran with
the same parameters, else those of ``book/durations.yaml``: the default build's chapters as measured, so
that a fresh clone, which has no stamps, does not start the longest chapter last), which keeps the last,
lone chapter short; a chapter in neither starts after those that are, in the book's order. Ctrl-C starts
no further chapter; the running ones finish (their outputs are written as usual, or not at all).
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any, Callable

from pullback_utils.book.layout import Layout
from pullback_utils.book.stamps import depends_on, read_stamp

__all__ = ["run_parallel", "read_durations"]

#: the default build's seconds per chapter (only an order for chapters without a stamp), under the book folder
DURATIONS = "durations.yaml"


def read_durations(layout: Layout) -> dict[str, float]:
    """{chapter: seconds} from ``book/durations.yaml`` ({} without the file); :class:`ParameterError` naming
    the file and the entry when it is not a mapping of chapter names to non-negative seconds."""
    import math

    import yaml

    from pullback_utils.chapters.parameters import ParameterError

    path = layout.book_dir / DURATIONS
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ParameterError(f"{path}: not valid YAML ({exc})") from None
    data = data or {}
    if not isinstance(data, dict):
        raise ParameterError(f"{path}: must map chapter names to seconds, got a {type(data).__name__}")
    out: dict[str, float] = {}
    for name, seconds in data.items():
        ok = isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and math.isfinite(seconds)
        if not isinstance(name, str) or not ok or seconds < 0:
            raise ParameterError(f"{path}: {name!r}: {seconds!r} is not a number of seconds >= 0")
        out[name] = float(seconds)
    return out


def _expected_seconds(stamp: dict, overrides: dict, measured: float) -> float:
    """The seconds of the chapter's last run when it ran with these parameters (a ``--quick`` stamp says little
    about a default run), else the default build's measured seconds."""
    seconds = float(stamp.get("seconds", 0.0) or 0.0)
    return seconds if seconds and stamp.get("overrides") == overrides else measured


def run_parallel(
    layout: Layout,
    plan: list[tuple[str, dict[str, Any]]],
    chapters: list[str],
    jobs: int,
    one: Callable[..., Any],
    log: Callable[[str], Any],
    durations: dict[str, float] | None = None,
) -> list[Any]:
    """``one(name, overrides, log, progress)`` for every chapter of ``plan``, ``jobs`` at a time; the results
    in plan order. ``log`` is called under a lock (one line at a time); progress bars are off. ``durations``:
    :func:`read_durations`, when the caller has read it already."""
    planned = [name for name, _ in plan]
    overrides = dict(plan)
    deps = {n: [d for d in depends_on(layout, n, chapters) if d in planned] for n in planned}
    measured = read_durations(layout) if durations is None else durations
    last = {n: _expected_seconds(read_stamp(layout, n) or {}, overrides[n], measured.get(n, 0.0)) for n in planned}
    guard = threading.Lock()

    def say(message: str) -> None:
        with guard:
            log(message)

    pending, running, finished, results = list(planned), {}, set(), {}
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="chapter") as pool:
        try:
            _loop(pool, pending, running, finished, results, deps, last, jobs, one, overrides, say)
        except KeyboardInterrupt:
            say(f"interrupted: no further chapter starts; waiting for {', '.join(running.values())} to finish")
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return [results[name] for name in planned]


def _loop(
    pool: ThreadPoolExecutor,
    pending: list,
    running: dict,
    finished: set,
    results: dict,
    deps: dict,
    last: dict,
    jobs: int,
    one: Callable[..., Any],
    overrides: dict,
    say: Callable[[str], Any],
) -> None:
    """Start ready chapters (their dependencies finished) longest first while fewer than ``jobs`` run."""
    while pending or running:
        ready = sorted((n for n in pending if all(d in finished for d in deps[n])), key=lambda n: -last[n])
        for name in ready[: jobs - len(running)]:
            pending.remove(name)
            running[pool.submit(one, name, overrides[name], say, False)] = name
        if not running:  # a dependency cycle: run the rest in the given order
            name = pending.pop(0)
            running[pool.submit(one, name, overrides[name], say, False)] = name
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            name = running.pop(future)
            results[name] = future.result()
            finished.add(name)
