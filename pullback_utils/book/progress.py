"""What a running chapter is doing, told to the person waiting, and why its kernel died if it did.

:class:`ChapterWatch` follows one chapter's execution (:mod:`pullback_utils.book.execute`):

- **cells**: nbclient calls :meth:`ChapterWatch.cell_started` before each code cell runs; a line says
  which (``cell 5/23``, its first line) and the time so far;
- **bars**: the kernel writes the package's tqdm bars as text to a side file
  (:mod:`pullback_utils.book.kernel_bars`); a thread tails it and prints a bar when it starts, then at
  most every ``bar_every`` seconds, and its finished state once;
- **heartbeat**: when nothing was printed for ``heartbeat`` seconds, one line with the cell, the time so
  far and the kernel's memory, so a long cell is never silent;
- **estimate**: where one is known for the chapter (``estimate``, seconds: the runner passes the last
  successful run with the same parameters, or a planner's figure through :data:`Estimate`), the start
  line and the heartbeats show it;
- **memory**: the kernel's resident memory (with its child processes) is sampled every ``interval``
  seconds; :meth:`ChapterWatch.death_report` turns a dead kernel into its likely cause: the signal
  that ended it, the peak memory against the machine's limit, the cell it was in and the settings that
  lower the memory of the basis engine.

``echo=False`` (the command line's ``--quiet``) prints nothing; the memory is watched all the same.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = ["ChapterWatch", "Estimate", "format_seconds", "memory_limit_bytes"]

Log = Callable[[str], Any]


#: a chapter's expected seconds and where the figure comes from (e.g. "last run", "plan"); a planner that
#: estimates chapters from their parameters passes these to ``run(..., estimates=...)``
@dataclass(frozen=True)
class Estimate:
    seconds: float
    source: str


#: the kernel is called close to the memory limit when its peak was at least this fraction of it
_NEAR_LIMIT = 0.8


def format_seconds(seconds: float) -> str:
    """``73`` -> ``"1:13"``, ``3725`` -> ``"1:02:05"``."""
    seconds = int(round(max(0.0, seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def memory_limit_bytes() -> int:
    """The memory a kernel can use at most: the machine's RAM, or this cgroup's limit when lower."""
    import psutil

    total = int(psutil.virtual_memory().total)
    try:
        raw = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if raw != "max":
            total = min(total, int(raw))
    except (OSError, ValueError):
        pass
    return total


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


class ChapterWatch:
    """Follows one chapter's kernel (module doc). Use as a context manager around the execution."""

    def __init__(
        self,
        name: str,
        progress_file: Path,
        log: Log,
        *,
        echo: bool = True,
        estimate: Estimate | None = None,
        interval: float = 0.5,
        bar_every: float = 10.0,
        heartbeat: float = 60.0,
    ) -> None:
        self.name = name
        self.progress_file = Path(progress_file)
        self.log = log
        self.echo = echo
        self.estimate = estimate
        self.interval = interval
        self.bar_every = bar_every
        self.heartbeat = heartbeat
        self.started = time.monotonic()
        self.process: Any = None  # the kernel's subprocess.Popen, once launched
        self.peak_rss = 0
        self.last_available: int | None = None
        self.code_cells = 0
        self.cell_number = 0
        self.cell_line = ""
        self.last_bar = ""
        self._said = time.monotonic()
        self._bars: dict[str, tuple[float, str]] = {}  # bar label -> (time printed, its latest line)
        self._shown: dict[str, str] = {}  # bar label -> the line last printed
        self._offset = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"watch-{name}", daemon=True)

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "ChapterWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._tail(final=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _say(self, text: str) -> None:
        self._said = time.monotonic()
        if self.echo:
            self.log(f"  [{self.name} {format_seconds(self.elapsed())}] {text}")

    def _of_estimate(self) -> str:
        if self.estimate is None:
            return ""
        left = self.estimate.seconds - self.elapsed()
        about = f"about {format_seconds(left)} left" if left > 0 else "past it"
        return f" (estimate {format_seconds(self.estimate.seconds)} from {self.estimate.source}: {about})"

    # ------------------------------------------------------------------ hooks (nbclient, the kernel manager)
    def notebook_started(self, notebook: Any = None, **_: Any) -> None:
        cells = getattr(notebook, "cells", None) or []
        self.code_cells = sum(c.get("cell_type") == "code" and bool(str(c.get("source", "")).strip()) for c in cells)
        est = f"; estimate {format_seconds(self.estimate.seconds)} from {self.estimate.source}" if self.estimate else ""
        self._say(f"kernel started, {self.code_cells} code cells{est}")

    def cell_started(self, cell: Any = None, cell_index: int = 0, **_: Any) -> None:
        self.cell_number += 1
        source = str(cell.get("source", "")) if cell is not None else ""
        tags = cell.get("metadata", {}).get("tags", []) if cell is not None else []
        first = next(
            (ln.strip() for ln in source.splitlines() if ln.strip() and not ln.strip().startswith("#")),
            next((ln.strip() for ln in source.splitlines() if ln.strip()), ""),
        )
        if "injected-parameters" in tags:
            first = "(parameters)"
        self.cell_line = first if len(first) <= 70 else first[:67] + "..."
        self._say(f"cell {self.cell_number}/{self.code_cells or '?'} `{self.cell_line}`")

    def attach(self, process: Any) -> None:
        """The kernel's process (a ``subprocess.Popen``); its memory is watched from now on."""
        self.process = process

    # ------------------------------------------------------------------ the thread
    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()
            self._tail()
            if self.heartbeat and time.monotonic() - self._said >= self.heartbeat:
                where = (
                    f"still in cell {self.cell_number}/{self.code_cells} `{self.cell_line}`"
                    if self.cell_number
                    else "starting the kernel"
                )
                mem = f", kernel {_gb(self._rss())}" if self.process is not None else ""
                self._say(f"{where}{mem}{self._of_estimate()}")

    def _rss(self) -> int:
        import psutil

        try:
            proc = psutil.Process(self.process.pid)
            return proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
        except (psutil.Error, AttributeError):
            return 0

    def _sample(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.peak_rss = max(self.peak_rss, self._rss())
        import psutil

        self.last_available = int(psutil.virtual_memory().available)

    def _tail(self, final: bool = False) -> None:
        try:
            with open(self.progress_file, encoding="utf-8", errors="replace") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except OSError:
            return
        complete = chunk[: chunk.rfind("\n") + 1]
        self._offset += len(complete.encode("utf-8"))
        now = time.monotonic()
        for line in complete.splitlines():
            parts = line.split(" ", 2)
            if len(parts) < 3 or parts[0] != "bar":
                continue
            text = parts[2]
            label = text.split(":", 1)[0] if ":" in text else text[:20]
            self.last_bar = text
            printed, before = self._bars.get(label, (0.0, ""))
            done, starting = "100%|" in text, " 0%|" in text
            shown = self._shown.get(label, "")
            if (
                (starting and shown != text)
                or (done and "100%|" not in shown)
                or (not done and now - printed >= self.bar_every)
            ):
                self._bars[label] = (now, text)
                self._shown[label] = text
                self._say(text)
            else:
                self._bars[label] = (printed, text)
        if final:  # the last state of every bar that changed since it was printed
            for label, (printed, text) in list(self._bars.items()):
                shown = self._shown.get(label, "")
                if shown != text and not ("100%|" in shown and "100%|" in text):
                    self._shown[label] = text
                    self._say(text)

    # ------------------------------------------------------------------ after a death
    def death_report(self) -> str:
        """Why the kernel most likely died, and what to change (module doc); one line."""
        self._sample()
        code = self.process.poll() if self.process is not None else None
        if code is None:
            how = "Kernel died"
        elif code < 0:
            try:
                how = f"Kernel died: killed by signal {-code} ({signal.Signals(-code).name})"
            except ValueError:
                how = f"Kernel died: killed by signal {-code}"
        else:
            how = f"Kernel died: exit status {code}"
        where = (
            f" in cell {self.cell_number}/{self.code_cells} `{self.cell_line}`"
            if self.cell_number
            else " before its first cell"
        )
        where += f" after {format_seconds(self.elapsed())}"
        if self.last_bar:
            where += f" (last progress: {self.last_bar})"
        limit = memory_limit_bytes()
        memory = f"; the kernel's peak memory was {_gb(self.peak_rss)} of {_gb(limit)}"
        if self.last_available is not None:
            memory += f" ({_gb(self.last_available)} free at the last sample)"
        near = self.peak_rss >= _NEAR_LIMIT * limit or (
            self.last_available is not None and self.last_available < (1 - _NEAR_LIMIT) * limit
        )
        if near and code in (None, -signal.SIGKILL):
            cause = (
                "; most likely killed for memory (the out-of-memory killer). Lower the basis engine's "
                "memory: rerun with PULLBACK_CHUNK_SIZE=4 (vectors per batched J·v/Jᵀu pass; default 64) "
                "and/or PULLBACK_JVP_MODE=forward (forward mode needs about half the memory of "
                "reverse-over-reverse) in the environment, or with a smaller model or basis size (-p k)"
            )
        elif code == -signal.SIGKILL:
            cause = (
                "; not near the memory limit, so probably not the out-of-memory killer: the process was "
                "killed from outside (or by itself)"
            )
        else:
            cause = "; not near the memory limit: a crash in native code? See kernel.log in the failed folder"
        return how + where + memory + cause
