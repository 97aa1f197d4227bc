"""Inside a chapter's kernel (the book runner's kernelspec loads this file before the kernel starts): the
tqdm bars the package draws become plain text lines in a side file that the runner tails, instead of
widgets in the notebook.

``tqdm.auto.tqdm`` (and ``trange``) are replaced by a text ``tqdm`` that writes to ``PROGRESS_FILE`` in
the kernel's working folder, one line per refresh (``bar <unix time> <tqdm's text line>``), at most one
refresh every ``_MININTERVAL`` seconds per bar. The executed notebook therefore carries neither bar
outputs nor widget state. This file imports only the standard library and tqdm, and is loaded by path
(not through the ``pullback_utils.book`` package), so the kernel starts as fast as before.
"""

from __future__ import annotations

import os
import time

PROGRESS_FILE = "progress.log"
#: seconds between two refreshes of one bar in the side file
_MININTERVAL = 5.0


class _Lines:
    """A file-like sink: every ``\\r``-refresh tqdm writes becomes one timestamped line."""

    def __init__(self, path: str) -> None:
        self._handle = open(path, "a", buffering=1, encoding="utf-8")

    def write(self, text: str) -> int:
        for line in text.replace("\r", "\n").split("\n"):
            line = line.strip()
            if line:
                self._handle.write(f"bar {time.time():.2f} {line}\n")
        return len(text)

    def flush(self) -> None:
        self._handle.flush()


def install(folder: str = ".") -> str:
    """Route ``tqdm.auto`` bars to ``folder/PROGRESS_FILE``; returns that path. Safe to call once per kernel."""
    import tqdm.auto
    import tqdm.autonotebook
    import tqdm.std

    path = os.path.abspath(os.path.join(folder, PROGRESS_FILE))
    sink = _Lines(path)

    class TextTqdm(tqdm.std.tqdm):  # type: ignore[misc]
        def __init__(self, *args, **kwargs) -> None:
            kwargs["file"] = sink
            kwargs.setdefault("mininterval", _MININTERVAL)
            kwargs.setdefault("ascii", True)
            kwargs["ncols"] = 100
            kwargs["dynamic_ncols"] = False
            super().__init__(*args, **kwargs)

    def trange(*args, **kwargs):
        return TextTqdm(range(*args), **kwargs)

    for module in (tqdm.auto, tqdm.autonotebook):
        module.tqdm = TextTqdm
        module.trange = trange
    return path
