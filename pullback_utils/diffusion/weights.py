"""Integrity of a model folder's weight files: readable safetensors and recorded sha256 digests.

A model folder may record the digests of its weight files in ``WEIGHTS.sha256``, one line per
file, ``<sha256 hex>  <path relative to the folder>`` (the format of ``sha256sum``, so
``sha256sum -c WEIGHTS.sha256`` run in the folder checks it too). The bundled zoo models carry
one; for other folders it is optional. :func:`check_weights` (called by
:func:`~pullback_utils.zoo.loading.load_model` before any weights are read) checks

- every ``*.safetensors`` file's header and extent (cheap: the header only), so a truncated or
  garbled file is named as such instead of diffusers' bare "Unable to load weights";
- when ``WEIGHTS.sha256`` exists, that every weight file is listed and matches (a flipped byte
  anywhere is caught). Hashing reads every byte: about 10 ms for a 5 MB zoo U-Net.

After retraining a model on purpose, record the new digests with :func:`write_weights_digest`.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from pullback_utils._io import write_text

__all__ = [
    "CorruptWeightsError",
    "DIGEST_FILE",
    "check_weights",
    "file_sha256",
    "read_weights_digest",
    "weight_files",
    "write_weights_digest",
]

DIGEST_FILE = "WEIGHTS.sha256"
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_LINE = re.compile(r"^([0-9a-f]{64}) [ *](\S.*)$")


class CorruptWeightsError(OSError):
    """A weight file is unreadable (corrupt, truncated) or does not match its recorded digest."""


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weight_files(folder: str | os.PathLike) -> list[Path]:
    """The weight files (``*.safetensors``, ``*.bin``) under ``folder``, sorted, hidden ones skipped."""
    root = Path(folder)
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix in _WEIGHT_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def write_weights_digest(folder: str | os.PathLike) -> Path:
    """Record the sha256 of every weight file under ``folder`` in ``folder/WEIGHTS.sha256``
    (atomically); returns its path."""
    root = Path(folder)
    files = weight_files(root)
    if not files:
        raise FileNotFoundError(f"{root} holds no weight files ({', '.join(_WEIGHT_SUFFIXES)}) to record")
    text = "".join(f"{file_sha256(p)}  {p.relative_to(root).as_posix()}\n" for p in files)
    return write_text(root / DIGEST_FILE, text)


def read_weights_digest(folder: str | os.PathLike) -> dict[str, str] | None:
    """``{relative path: sha256}`` recorded in ``folder/WEIGHTS.sha256``; ``None`` without one."""
    path = Path(folder) / DIGEST_FILE
    if not path.is_file():
        return None
    recorded: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        m = _LINE.match(line.strip())
        if m is None:
            raise CorruptWeightsError(
                f"{path}, line {n}: expected '<64 hex digits>  <file>' (sha256sum format), got {line[:80]!r}"
            )
        recorded[m.group(2)] = m.group(1)
    return recorded


def _check_safetensors(path: str | os.PathLike) -> None:
    """``CorruptWeightsError`` naming ``path`` unless its safetensors header and extent are valid."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(os.fspath(path), framework="pt") as f:
            f.keys()
    except SafetensorError as e:
        raise CorruptWeightsError(
            f"weights file {path} is corrupt or truncated ({e}); restore it from the original "
            "source or save the model again"
        ) from None


def check_weights(folder: str | os.PathLike) -> bool:
    """Check the weight files of a model folder (module doc); ``True`` when digests were checked.

    Raises:
        CorruptWeightsError: naming the file that is unreadable, missing, unlisted or changed.
    """
    root = Path(folder)
    files = weight_files(root)
    for p in files:
        if p.suffix == ".safetensors":
            _check_safetensors(p)
    recorded = read_weights_digest(root)
    if recorded is None:
        return False
    record = root / DIGEST_FILE
    for rel in recorded:
        if not (root / rel).is_file():
            raise CorruptWeightsError(f"weights file {root / rel}, listed in {record}, is missing")
    for p in files:
        rel = p.relative_to(root).as_posix()
        if rel not in recorded:
            raise CorruptWeightsError(
                f"weights file {p} has no digest in {record}; if it belongs there, record it with "
                f"pullback_utils.diffusion.weights.write_weights_digest({str(root)!r})"
            )
        found = file_sha256(p)
        if found != recorded[rel]:
            raise CorruptWeightsError(
                f"weights file {p} is corrupt: its sha256 {found[:16]}... does not match the digest "
                f"{recorded[rel][:16]}... recorded in {record}. Restore the file; if the model was "
                f"retrained on purpose, record the new digest with "
                f"pullback_utils.diffusion.weights.write_weights_digest({str(root)!r})"
            )
    return True
