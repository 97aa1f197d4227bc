"""One chapter's execution: papermill in a ``python3`` kernel of this interpreter, in a hidden folder
that replaces the chapter's output folder only when the notebook succeeded.

Used by :mod:`pullback_utils.book.runner` (which plans, skips and reports). The kernel starts in that
folder through nbclient's resource path, never by changing the runner's own working directory
(chapters run in parallel threads of one runner: :mod:`pullback_utils.book.parallel`).

While it runs, :class:`~pullback_utils.book.progress.ChapterWatch` reports the cells, the kernel's tqdm
bars (text lines in a side file, :mod:`pullback_utils.book.kernel_bars`; no widget state is stored in
the executed notebook) and the kernel's memory; a kernel that died is reported with its likely cause.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from pullback_utils._io import write_json
from pullback_utils.book.kernel_bars import PROGRESS_FILE
from pullback_utils.book.layout import Layout
from pullback_utils.book.progress import ChapterWatch, Estimate
from pullback_utils.book.stamps import FAILURE, STAMP, output_digests
from pullback_utils.chapters.parameters import BOOK_ENV

__all__ = ["NotebookResult", "KERNEL_NAME", "KERNEL_LOG"]

KERNEL_NAME = "python3"
KERNEL_LOG = "kernel.log"


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

    A kernelspec in a folder first on ``JUPYTER_PATH`` wins over user and system ones. The kernel's own
    log (``[IPKernelApp] ...``, e.g. the KeyboardInterrupt it logs at shutdown) goes to ``kernel.log``
    in its working folder, not to the runner's terminal; the chapters' output is unaffected. The kernel
    also gets ``PULLBACK_BOOK_BUILD=1`` (:data:`pullback_utils.chapters.parameters.BOOK_ENV`), and its ``tqdm.auto``
    bars write text lines to ``progress.log`` in its folder (:mod:`pullback_utils.book.kernel_bars`, loaded
    by path; a kernel that cannot load it starts all the same, with the usual bars).
    """
    old = os.environ.get("JUPYTER_PATH")
    bars = str(Path(__file__).with_name("kernel_bars.py"))
    launcher = (
        "import os, sys; fd = os.open(%r, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644); "
        "os.dup2(fd, 2); sys.argv[0] = 'ipykernel_launcher'\n"
        "try:\n import importlib.util as u; s = u.spec_from_file_location('_pullback_kernel_bars', %r); "
        "m = u.module_from_spec(s); s.loader.exec_module(m); m.install('.')\n"
        "except Exception as e:\n print('progress bars stay widgets:', e, file=sys.stderr)\n"
        "from ipykernel import kernelapp; kernelapp.launch_new_instance()"
    ) % (KERNEL_LOG, bars)
    with tempfile.TemporaryDirectory(prefix="pullback-kernel-") as tmp:
        spec = Path(tmp) / "kernels" / KERNEL_NAME
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [
                        sys.executable,
                        "-c",
                        launcher,
                        "-f",
                        "{connection_file}",
                        "--IPKernelApp.log_level=ERROR",
                    ],
                    "display_name": "Python 3 (ipykernel)",
                    "language": "python",
                    "env": {BOOK_ENV: "1"},
                    "metadata": {"debugger": True},
                }
            )
        )
        os.environ["JUPYTER_PATH"] = os.pathsep.join([tmp, old] if old else [tmp])
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = old


def _recover(folder: Path, name: str = "*") -> None:
    """Undo what an interrupted run left in ``folder`` for output folder ``name`` (default: any):
    restore a swapped-out good output, drop temporary folders."""
    if not folder.is_dir():
        return
    for path in sorted(folder.glob(f".{name}.old-*")):
        final = folder / path.name[1:].rsplit(".old-", 1)[0]
        if not final.exists():
            os.replace(path, final)
        else:
            shutil.rmtree(path, ignore_errors=True)
    for path in folder.glob(f".{name}.run-*"):
        shutil.rmtree(path, ignore_errors=True)


def _describe_failure(exc: BaseException, executed: Path) -> str:
    """One line naming the failed cell: its number in the source notebook, first line and the whole error."""
    from papermill.exceptions import PapermillExecutionError

    if not isinstance(exc, PapermillExecutionError):
        return " ".join(f"{type(exc).__name__}: {exc}".split())
    number = exc.cell_index + 1
    with contextlib.suppress(Exception):  # map the executed notebook's index back to the source's
        cells = json.loads(executed.read_text())["cells"]
        cells = [c for c in cells if "papermill-error-cell-tag" not in c.get("metadata", {}).get("tags", [])]
        injected = sum("injected-parameters" in c.get("metadata", {}).get("tags", []) for c in cells[: exc.cell_index])
        number = exc.cell_index - injected + 1
    first = next((line.strip() for line in (exc.source or "").splitlines() if line.strip()), "")
    return f"cell {number} (In [{exc.exec_count}]) `{first}`: {exc.ename}: {' '.join(str(exc.evalue).split())}"


def _hide_injected_input(path: Path) -> None:
    """Tag papermill's injected-parameters cell ``remove-cell``: the page shows the chapter's own parameters
    cell; the values a run changed are listed on the execution-statistics page (from the stamp)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags[:] = [t for t in tags if t != "hide-input"] + ["remove-cell"]
    nbformat.write(nb, path)


def _watched_kernel_manager(watch: ChapterWatch) -> type:
    """nbclient's kernel manager class, telling ``watch`` the kernel's process once it is launched."""
    from jupyter_client.manager import AsyncKernelManager

    class WatchedKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            await super()._async_launch_kernel(kernel_cmd, **kw)
            watch.attach(getattr(self.provisioner, "process", None))

    return WatchedKernelManager


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _execute(
    layout: Layout,
    name: str,
    overrides: dict[str, Any],
    key: str,
    fingerprint: tuple[str, str],
    progress: bool,
    dest: Path,
    log: Callable[[str], Any] = print,
    estimate: Estimate | None = None,
) -> NotebookResult:
    """Run one notebook in a hidden sibling of ``dest`` that replaces ``dest`` when it succeeded;
    ``progress``: report cells, bars and time through ``log`` while it runs (with ``estimate``)."""
    import papermill

    dest.parent.mkdir(parents=True, exist_ok=True)
    work = dest.parent / f".{dest.name}.run-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    executed = work / f"{name}.ipynb"
    started = time.perf_counter()
    watch = ChapterWatch(name, work / PROGRESS_FILE, log, echo=progress, estimate=estimate)
    try:
        # The kernel starts in ``work`` through nbclient's resources path: papermill's ``cwd=`` would
        # os.chdir the whole runner, which chapters running in parallel threads share.
        with watch:
            papermill.execute_notebook(
                str(layout.notebook(name)),
                str(executed),
                parameters=overrides,
                resources={"metadata": {"path": str(work)}},
                kernel_name=KERNEL_NAME,
                progress_bar=False,
                log_output=False,
                store_widget_state=False,
                kernel_manager_class=_watched_kernel_manager(watch),
                on_notebook_start=watch.notebook_started,
                on_cell_execute=watch.cell_started,
            )
    except BaseException as exc:  # noqa: BLE001 - keep going past any notebook failure
        seconds = time.perf_counter() - started
        message = watch.death_report() if type(exc).__name__ == "DeadKernelError" else _describe_failure(exc, executed)
        failed = dest.parent / f"{dest.name}.failed"
        write_json(
            work / FAILURE,
            sort_keys=True,
            data={
                "notebook": name,
                "status": "failed",
                "message": message,
                "seconds": round(seconds, 2),
                "overrides": overrides,
                "key": key,
                "finished": _now(),
            },
        )
        shutil.rmtree(failed, ignore_errors=True)
        os.replace(work, failed)
        if isinstance(exc, KeyboardInterrupt):
            raise
        return NotebookResult(name, "failed", seconds, overrides, message)
    seconds = time.perf_counter() - started
    _hide_injected_input(executed)
    (work / PROGRESS_FILE).unlink(missing_ok=True)  # the runner showed it; not an output of the chapter
    kernel_log = work / KERNEL_LOG
    if kernel_log.is_file() and not kernel_log.read_text().strip():
        kernel_log.unlink()
    version, source_hash = fingerprint
    write_json(
        work / STAMP,
        sort_keys=True,
        data={
            "notebook": name,
            "status": "ok",
            "key": key,
            "overrides": overrides,
            "seconds": round(seconds, 2),
            "finished": _now(),
            "package_version": version,
            "package_source_sha256": source_hash,
            "outputs": output_digests(work),
        },
    )
    old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
    if dest.exists():
        os.replace(dest, old)
    os.replace(work, dest)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(dest.parent / f"{dest.name}.failed", ignore_errors=True)
    return NotebookResult(name, "ok", seconds, overrides)
