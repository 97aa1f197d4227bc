"""Results on disk: atomic writes, validated JSON reads, and plain-JSON conversion (a leaf module).

Every file the package writes for a reader to keep (``metrics.json``, cache entries, stamps, model
records) goes through :func:`atomic_write`: the data land in a temporary file in the same folder, which
replaces the target only once it is complete, so an interrupted run never leaves half a file. The file
gets the mode an ordinary ``open(path, "w")`` would give it, ``0o666 & ~umask`` (the temporary file is
created 0600; its mode is set before the rename), so another user can read a shared cache or model.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "give_default_mode", "write_text", "write_json", "read_json", "to_jsonable", "JSONReadError"]


class JSONReadError(ValueError):
    """A JSON file that is missing, unreadable, not JSON, or not of the expected shape."""


def _current_umask() -> int:
    """The process's umask, read from ``/proc/self/status`` (Linux) or, elsewhere, by setting and restoring it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no other way to read it; restored at once
    os.umask(mask)
    return mask


def _default_file_mode() -> int:
    """The mode of a new file created with ``open(path, "w")``: ``0o666 & ~umask``."""
    return 0o666 & ~_current_umask()


def give_default_mode(folder: str | os.PathLike) -> None:
    """Give every file under ``folder`` the mode :func:`_default_file_mode` (for files written by other
    libraries, e.g. ``save_pretrained``, whose safetensors are created 0600 whatever the umask)."""
    mode = _default_file_mode()
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, mode)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", *, fsync: bool = False) -> Iterator[Any]:
    """Open a temporary file next to ``path`` for writing; it replaces ``path`` when the block succeeds.

    The folder is created if needed. On an exception the temporary file is removed and ``path`` is
    left as it was. ``fsync``: flush the data to disk before the rename (for caches that must survive
    a crash of the machine, not only of the process). The file ends up with mode ``0o666 & ~umask``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _default_file_mode())  # mkstemp creates 0600 whatever the umask
        with os.fdopen(fd, mode) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_write(path) as f:
        f.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any, *, indent: int | None = 2, sort_keys: bool = False) -> Path:
    """Write ``to_jsonable(data)`` as strict JSON (no NaN) to ``path`` atomically; returns the path."""
    text = json.dumps(to_jsonable(data), indent=indent, allow_nan=False, sort_keys=sort_keys)
    with atomic_write(path) as f:
        f.write(text + "\n")
    return Path(path)


_RAISE = object()


def read_json(
    path: str | os.PathLike, *, expect: type = dict, error: type[Exception] = JSONReadError, default: Any = _RAISE
) -> Any:
    """Parse ``path``; when it is missing, broken or not ``expect``: ``default`` if given, else ``error``
    (:class:`JSONReadError` unless the caller names its own class) with a message naming the file."""
    path = Path(path)
    problem = None
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        problem = f"{path}: no such file"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problem = f"{path}: not readable JSON ({exc})"
    else:
        if not isinstance(data, expect):
            problem = f"{path}: expected a JSON {expect.__name__}, got {type(data).__name__}"
    if problem is None:
        return data
    if default is not _RAISE:
        return default
    raise error(problem)


def to_jsonable(obj: Any) -> Any:
    """numpy/torch scalars and arrays, tuples, Paths, dataclass-like ``to_dict()`` -> plain JSON (NaN -> None)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # torch tensors
        return to_jsonable(obj.detach().cpu().numpy())
    if hasattr(obj, "tolist") and hasattr(obj, "dtype"):  # numpy arrays and scalars
        return to_jsonable(obj.tolist())
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return to_jsonable(obj.to_dict())
    return obj
