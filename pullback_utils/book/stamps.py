"""When a chapter must run again: stamps, the package fingerprint, and chapters that read others.

A chapter is skipped when its stamp (``<out>/stamp.json``) records the same key, the hash of: the
notebook file, the effective overrides, the package version and the package's code (syntax trees without
docstrings; the book tooling excluded), the weights of the bundled models it names, and the results it
depends on; and when every output file that the stamp lists is
still there (a deleted ``metrics.json`` or figure makes it run again).

A chapter that reads other chapters' results (a scorecard) says so in its notebook metadata,
``{"pullback_book": {"depends_on": ["coarse_to_fine", ...]}}`` or ``"*"`` for all; it runs after them
and its key includes the digest of their ``metrics.json``, so it reruns when one of them changes.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from pullback_utils._io import read_json
from pullback_utils.book.layout import Layout
from pullback_utils.book.params import notebook_metadata

__all__ = [
    "STAMP",
    "FAILURE",
    "package_fingerprint",
    "weights_digest",
    "stamp_key",
    "output_digests",
    "stale_outputs",
    "read_stamp",
    "read_failure",
    "depends_on",
    "dependents",
    "inputs_digest",
    "dependency_order",
]

STAMP = "stamp.json"
FAILURE = "failure.json"


def package_fingerprint(pkg: Path | None = None) -> tuple[str, str]:
    """(package version, sha256 of the package's code): every module's syntax tree without docstrings
    (comments and layout are not in the tree), and the other files, the book tooling, caches and the
    zoo's weights excluded (a chapter's key covers the weights it names: :func:`weights_digest`).
    A docstring or comment edit therefore reruns no chapter."""
    from pullback_utils import __version__

    pkg = Path(pkg) if pkg is not None else Path(__file__).resolve().parents[1]
    tooling = pkg / "book"
    weights = pkg / "zoo" / "weights"
    digest = hashlib.sha256()
    for path in sorted(pkg.rglob("*")):
        if (
            not path.is_file()
            or "__pycache__" in path.parts
            or path.suffix == ".pyc"
            or tooling in path.parents
            or weights in path.parents
        ):
            continue
        digest.update(path.relative_to(pkg).as_posix().encode() + b"\0")
        digest.update(
            _code_digest(path.read_text()) if path.suffix == ".py" else hashlib.sha256(path.read_bytes()).digest()
        )
    return __version__, digest.hexdigest()


_CODE_DIGESTS: dict[bytes, bytes] = {}  # sha256 of a module's text -> sha256 of its code (parsed once per process)


def _code_digest(source: str) -> bytes:
    """sha256 of :func:`_code_bytes` of ``source``, memoised by the text's own hash: parsing every module
    takes about a second, hashing its text milliseconds, and a run computes the fingerprint more than once."""
    raw = hashlib.sha256(source.encode()).digest()
    if raw not in _CODE_DIGESTS:
        _CODE_DIGESTS[raw] = hashlib.sha256(_code_bytes(source)).digest()
    return _CODE_DIGESTS[raw]


def _code_bytes(source: str) -> bytes:
    """The module's syntax tree without docstrings and positions (what runs, not how it reads)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(getattr(body[0], "value", None), ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False).encode()


_WEIGHT_FILES = (".safetensors", ".bin", ".pt", ".ckpt")  # covered by the folder's WEIGHTS.sha256


def weights_digest(text: str, weights_dir: Path | None = None) -> str:
    """sha256 of the bundled model folders that ``text`` (a chapter's source and overrides) names: a
    folder counts when its name or a parent folder's name (``ladder``) appears as a word. Large weight
    files enter through the folder's ``WEIGHTS.sha256``, so nothing of 24 MB is read."""
    root = Path(weights_dir) if weights_dir is not None else Path(__file__).resolve().parents[1] / "zoo" / "weights"
    if not root.is_dir():
        return ""
    digest = hashlib.sha256()
    for marker in sorted(root.rglob("zoo.json")):
        folder = marker.parent
        names = folder.relative_to(root).parts
        if not any(re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text) for n in names):
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix not in _WEIGHT_FILES and "__pycache__" not in path.parts:
                digest.update(path.relative_to(root).as_posix().encode() + b"\0")
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def stamp_key(
    notebook: Path,
    overrides: dict[str, Any],
    version: str,
    source_hash: str,
    inputs: str = "",
    *,
    weights_dir: Path | None = None,
) -> str:
    """The skip key: notebook bytes, effective overrides, package version and code hash, the weights of
    the bundled models the notebook or overrides name (:func:`weights_digest`), the model map's entries for
    the models they name (``$PULLBACK_MODEL_MAP``), and (for a chapter that reads others' results) the
    digest of those results."""
    digest = hashlib.sha256()
    source = Path(notebook).read_bytes()
    settings = json.dumps(overrides, sort_keys=True, default=repr)
    digest.update(hashlib.sha256(source).digest())
    digest.update(settings.encode())
    digest.update(version.encode() + b"\0" + source_hash.encode() + b"\0" + inputs.encode())
    digest.update(weights_digest(source.decode("utf-8", "replace") + "\n" + settings, weights_dir).encode())
    from pullback_utils.diffusion.model_map import model_map

    mapped = {k: v for k, v in model_map().items() if k in settings or k in source.decode("utf-8", "replace")}
    if mapped:  # a model the chapter names is read from another folder: another output (no change when unset)
        digest.update(json.dumps(mapped, sort_keys=True).encode())
    return digest.hexdigest()


def output_digests(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of the files a chapter left in ``folder`` (the stamp itself excluded)."""
    out = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and path.name != STAMP:
            out[path.relative_to(folder).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def stale_outputs(folder: Path, stamp: dict[str, Any]) -> list[str]:
    """The outputs a stamp lists that are gone (``[]``: all there). A file edited since is kept as it is
    (a chapter that reads it sees the change through :func:`inputs_digest`)."""
    recorded = stamp.get("outputs")
    if not isinstance(recorded, dict):
        return ["the stamp lists no outputs (written by an older runner)"]
    return [f"{rel} missing" for rel in recorded if not (Path(folder) / rel).is_file()]


def read_stamp(layout: Layout, name: str, folder: Path | None = None) -> dict[str, Any] | None:
    """The stamp of chapter ``name`` (in ``folder``, default its folder of ``book/generated``), or None."""
    return read_json(Path(folder or layout.out_dir(name)) / STAMP, default=None)


def read_failure(layout: Layout, name: str) -> dict[str, Any] | None:
    return read_json(layout.generated / f"{name}.failed" / FAILURE, default=None)


def _depends_on_all(layout: Layout, name: str) -> bool:
    return notebook_metadata(layout.notebook(name)).get("depends_on") in ("*", ["*"])


def depends_on(layout: Layout, name: str, chapters: list[str]) -> list[str]:
    """Chapters whose results ``name`` reads, from its notebook metadata
    ``{"pullback_book": {"depends_on": [names] | "*"}}`` ("*": every other chapter)."""
    deps = notebook_metadata(layout.notebook(name)).get("depends_on", [])
    if deps in ("*", ["*"]):
        return [n for n in chapters if n != name and not _depends_on_all(layout, n)]
    return [d for d in deps if d in chapters and d != name]


def dependents(layout: Layout, names: list[str], chapters: list[str]) -> list[str]:
    """The chapters (of ``chapters``, not in ``names``) that read the results of ``names``, directly or
    through each other, in ``chapters``' order."""
    wanted = set(names)
    changed = True
    while changed:
        changed = False
        for other in chapters:
            if other not in wanted and wanted & set(depends_on(layout, other, chapters)):
                wanted.add(other)
                changed = True
    return [n for n in chapters if n in wanted and n not in names]


def inputs_digest(layout: Layout, deps: list[str]) -> str:
    """Digest of the dependencies' current results: their stamp keys and ``metrics.json`` files."""
    digest = hashlib.sha256()
    for dep in sorted(deps):
        stamp = read_stamp(layout, dep) or {}
        metrics = layout.out_dir(dep) / "metrics.json"
        digest.update(f"{dep}\0{stamp.get('key', '')}\0".encode())
        digest.update(hashlib.sha256(metrics.read_bytes()).digest() if metrics.is_file() else b"-")
    return digest.hexdigest() if deps else ""


def dependency_order(layout: Layout, names: list[str]) -> list[str]:
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
