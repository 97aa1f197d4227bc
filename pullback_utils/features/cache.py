"""A content-addressed on-disk cache of local bases.

An entry's key is the sha256 of everything that determines the basis: the U-Net's fingerprint
(class, config and weights), the bytes of x_t, the U-Net timestep, the layer, k, the
conditioning (hash of the encoder hidden states, so the prompt *and* the text encoder count) and
the solver arguments that change results (method, tol, max_iters, oversample, seed, block_size when
given, ...; not
``chunk_size``, ``progress``, ``jvp_mode``, ``batching`` or ``callback``, which change only speed,
rounding or display). Values are stored with safetensors (``v``, ``u``, ``s``, and every tensor
of ``info`` as ``info.<name>``) and the rest of the ``info`` dict as JSON in the header metadata,
with a sha256 of the tensor bytes. A hit returns the same types (tensors stay tensors, ints ints,
NaN stays a float) and gives the warnings the computation gave (unconverged, degenerate).

The model's fingerprint (:func:`module_fingerprint`) hashes every weight. Callers keep it together
with :func:`module_state_token` (identity, version counter and storage of each parameter and buffer:
``load_state_dict``, in-place updates, ``.to(...)``) and :func:`module_value_probe`, and re-hash when
either changes. The probe reads the values, so an edit through ``.data`` (which bypasses the version
counter) is seen too: for a denoiser of up to :data:`FULL_PROBE_BYTES` of weights (every zoo model;
4.5 MB, 20-120 ms per call measured on the loaded 2-core machine) the probe *is* the full sha256, so any edit
is seen; above that (Stable Diffusion's 3.4 GB U-Net) it hashes :data:`_PROBE_VALUES` evenly spaced
values of every tensor plus its float64 sum (one pass over the weights at memory speed), so an edit that
changes any sampled value or a tensor's sum is seen.

A ``cache_dir`` argument means one thing everywhere (:func:`resolve_cache_dir`): ``None`` or ``""``
is no cache; ``~`` and environment variables are expanded, and an unset variable is refused.

- Writes are atomic: a temporary file in the same folder, then ``os.replace``.
- Reads validate the file (header, key, shapes, checksum); a truncated or corrupted entry is
  reported once (a :class:`BasisCacheWarning`) and recomputed. Nothing is ever unpickled.
- A sweep calling :meth:`BasisCache.get_or_compute` per item resumes after an interruption
  without recomputing entries already on disk.
- A folder that cannot be written (read-only, a file, under a file) is reported before the
  computation (a :class:`BasisCacheWarning`); the basis is computed and returned, not saved. A folder
  that cannot be read is reported the same way and the basis computed.
- Entries are written with the umask's mode (``0o666 & ~umask``), so a shared cache serves every user
  the umask lets read it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from pullback_utils._io import atomic_write
from pullback_utils.engine.solvers import SOLVER_DEFAULTS

__all__ = [
    "BasisCache",
    "BasisCacheWarning",
    "basis_key_fields",
    "module_fingerprint",
    "module_state_token",
    "module_value_probe",
    "resolve_cache_dir",
    "tensor_hash",
]

# 2: bases carry the honest solver's converged/reason/gap (issue 25); entries of format 1 claimed convergence
# without a verified gap, so they are not served.
_FORMAT = "pullback-basis-2"
# Solver arguments that do not change the result (only speed, memory or display).
_NEUTRAL_SOLVER_ARGS = frozenset({"chunk_size", "progress", "jvp_mode", "batching", "callback"})
# solver settings that enter the key only when given (not None): block_size (issue 27), whose default is the
# block every entry written before it existed was computed with
_KEYED_WHEN_GIVEN = ("block_size",)
# Documented defaults of jacobian_svd, used when the engine cannot be inspected.

log = logging.getLogger(__name__)
_reported: set[str] = set()


class BasisCacheWarning(UserWarning):
    """A cache entry was unreadable (and is recomputed), or the cache folder cannot be written."""


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().to("cpu").contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def tensor_hash(t: torch.Tensor | None) -> str | None:
    """sha256 of a tensor's dtype, shape and bytes (``None`` -> ``None``)."""
    if t is None:
        return None
    h = hashlib.sha256()
    h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(_tensor_bytes(t))
    return h.hexdigest()


def module_fingerprint(module: torch.nn.Module) -> str:
    """sha256 of a module's class, config (if any) and state dict (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    h.update(type(module).__qualname__.encode())
    cfg = getattr(module, "config", None)
    if cfg is not None:
        items = {k: v for k, v in dict(cfg).items() if not str(k).startswith("_")}
        h.update(json.dumps(items, sort_keys=True, default=str).encode())
    for name, t in sorted(module.state_dict().items()):
        h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()


def module_state_token(module: torch.nn.Module) -> tuple:
    """Cheap token that changes whenever a parameter or buffer of ``module`` is replaced, moved,
    cast or modified in place (its ``_version`` counter); no tensor data is read."""
    return tuple(
        (id(t), t._version, t.data_ptr(), t.dtype, t.device, tuple(t.shape))
        for t in (*module.parameters(), *module.buffers())
    )


#: Weights up to this size are probed by their full sha256 (:func:`module_value_probe`).
FULL_PROBE_BYTES = 256 * 2**20
#: Values hashed per tensor by the probe of larger modules.
_PROBE_VALUES = 4096


def module_value_probe(module: torch.nn.Module) -> str:
    """A digest of the values of ``module``'s parameters and buffers that changes when they are edited
    in place, ``.data`` included (module doc): the full :func:`module_fingerprint` up to
    :data:`FULL_PROBE_BYTES`, else evenly spaced values and the float64 sum of every tensor."""
    tensors = [(n, t.detach()) for n, t in sorted(module.state_dict().items())]
    if sum(t.numel() * t.element_size() for _, t in tensors) <= FULL_PROBE_BYTES:
        return module_fingerprint(module)
    h = hashlib.sha256(b"probe|")
    for name, t in tensors:
        flat = t.reshape(-1)
        step = max(1, flat.numel() // _PROBE_VALUES)
        total = flat.sum(dtype=torch.float64).item() if t.is_floating_point() else int(flat.sum())
        h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|{total!r}|".encode())
        h.update(_tensor_bytes(flat[::step]))
    return h.hexdigest()


def resolve_cache_dir(cache_dir: str | os.PathLike | None, name: str = "cache_dir") -> Path | None:
    """What a ``cache_dir`` argument means everywhere: ``None`` or ``""`` -> no cache (``None``);
    otherwise a path with ``~`` and environment variables expanded (the folder is not created here).

    Raises ``ValueError`` naming ``name`` for a value that is not a str or path, or that names an
    environment variable that is not set (``"$HOME/c"`` would otherwise create a folder named ``$HOME``).
    """
    if cache_dir is None:
        return None
    if not isinstance(cache_dir, (str, os.PathLike)):
        raise ValueError(f"{name} must be a folder (str or path) or None for no cache, got {type(cache_dir).__name__}")
    text = os.fspath(cache_dir)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text.strip():
        return None
    expanded = os.path.expandvars(os.path.expanduser(text))
    unset = re.findall(r"\$(?:\{(\w+)\}|(\w+))", expanded)
    if unset or expanded.startswith("~"):
        names = [a or b for a, b in unset] or ["HOME (for ~)"]
        raise ValueError(
            f"{name}={text!r}: environment variable(s) {', '.join(names)} not set, so the path cannot be "
            f"expanded; set them, or give the folder's full path"
        )
    return Path(expanded)


def basis_key_fields(
    model_fingerprint: str,
    x_t: torch.Tensor,
    timestep: int,
    k: int,
    *,
    layer: str = "mid",
    cond: torch.Tensor | None = None,
    solver: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON-able fields that determine a local basis (defaults of the solver filled in)."""
    args = dict(SOLVER_DEFAULTS)
    args.update({k_: v for k_, v in (solver or {}).items() if k_ not in _NEUTRAL_SOLVER_ARGS})
    for name in _KEYED_WHEN_GIVEN:  # settings added later: their default leaves the keys of older entries as they were
        if args.get(name, 0) is None:
            del args[name]
    return {
        "format": _FORMAT,
        "model": model_fingerprint,
        "x_t": tensor_hash(x_t),
        "timestep": int(timestep),
        "layer": str(layer),
        "k": int(k),
        "cond": tensor_hash(cond),
        "solver": {n: _jsonable(v) for n, v in sorted(args.items())},
    }


def _jsonable(obj: Any, keep_floats: bool = False) -> Any:
    """JSON-able copy of ``obj``; non-finite floats become strings unless ``keep_floats`` (then
    they are written as NaN / Infinity, which ``json`` reads back as floats)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v, keep_floats) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, keep_floats) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.detach().cpu().tolist(), keep_floats)
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays and scalars
        return _jsonable(obj.tolist(), keep_floats)
    if isinstance(obj, float) and not math.isfinite(obj) and not keep_floats:
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return repr(obj)


_INFO = "info."  # prefix of the tensors of a basis's info in an entry


def _key(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _digest(tensors: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(f"{name}|{tensors[name].dtype}|{tuple(tensors[name].shape)}|".encode())
        h.update(_tensor_bytes(tensors[name]))
    return h.hexdigest()


class BasisCache:
    """Local bases stored under ``root`` as ``<key>.safetensors`` (see the module doc)."""

    def __init__(self, root: str | os.PathLike) -> None:
        resolved = resolve_cache_dir(root, "root")
        if resolved is None:
            raise ValueError(
                f"root must be a folder, got {root!r}; for no cache pass cache_dir=None (or '') to the "
                "function that takes one instead of building a BasisCache"
            )
        self.root = resolved

    def key(self, fields: Mapping[str, Any]) -> str:
        """Hex sha256 of the key fields."""
        return _key(fields)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def __contains__(self, fields: Mapping[str, Any]) -> bool:
        try:
            return self.path(self.key(fields)).is_file()
        except OSError:  # an unreadable folder holds nothing we can use
            return False

    def load(self, key: str):
        """The cached ``LocalBasis`` of ``key``; ``None`` if absent, invalid or in a folder that cannot
        be read (each reported once, a :class:`BasisCacheWarning`)."""
        from pullback_utils.engine.solvers import LocalBasis  # an engine import error is not corruption

        path = self.path(key)
        try:
            present = path.is_file()
        except OSError as e:  # e.g. the folder is not readable (searchable) by this user
            where = str(self.root)
            if where not in _reported:
                _reported.add(where)
                msg = (
                    f"basis cache folder {self.root} cannot be read ({e.strerror or e}); computing the basis "
                    "(pass a readable cache_dir, or None for no cache)"
                )
                log.warning(msg)
                warnings.warn(msg, BasisCacheWarning, stacklevel=3)
            return None
        if not present:
            return None
        try:
            return self._read(path, key, LocalBasis)
        except Exception as e:  # noqa: BLE001 - any unreadable entry is recomputed
            where = str(path)
            if where not in _reported:
                _reported.add(where)
                msg = f"basis cache entry {path} is unreadable ({type(e).__name__}: {e}); recomputing it"
                log.warning(msg)
                warnings.warn(msg, BasisCacheWarning, stacklevel=3)
            return None

    def _read(self, path: Path, key: str, LocalBasis: type):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            names = set(f.keys())
            if not {"v", "u", "s"} <= names or any(n not in ("v", "u", "s") and not n.startswith(_INFO) for n in names):
                raise ValueError(f"unexpected tensors {sorted(names)}")
            tensors = {n: f.get_tensor(n) for n in names}
        if meta.get("format") != _FORMAT or meta.get("key") != key:
            raise ValueError("header does not match this cache entry")
        if meta.get("sha256") != _digest(tensors):
            raise ValueError("checksum mismatch")
        k = tensors["s"].shape[0]
        if tensors["s"].dim() != 1 or tensors["v"].shape[0] != k or tensors["u"].shape[0] != k:
            raise ValueError("inconsistent shapes")
        info = json.loads(meta.get("info", "{}"))
        info.update({n[len(_INFO) :]: t for n, t in tensors.items() if n.startswith(_INFO)})
        info["cache"] = {"hit": True, "key": key}
        return LocalBasis(v=tensors["v"], u=tensors["u"], s=tensors["s"], info=info)

    def save(
        self,
        key: str,
        basis: Any,
        fields: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write ``basis`` (v, u, s, info) atomically under ``key``; returns the file's path."""
        from safetensors.torch import save

        tensors = {n: getattr(basis, n).detach().to("cpu").contiguous() for n in ("v", "u", "s")}
        info = {k: v for k, v in dict(getattr(basis, "info", {}) or {}).items() if k != "cache"}
        for name in [n for n, v in info.items() if isinstance(v, torch.Tensor)]:
            tensors[_INFO + name] = info.pop(name).detach().to("cpu").contiguous()
        header = {
            "format": _FORMAT,
            "key": key,
            "sha256": _digest(tensors),
            "info": json.dumps(_jsonable(info, keep_floats=True)),
            "fields": json.dumps(_jsonable(dict(fields or {}))),
            "meta": json.dumps(_jsonable(dict(meta or {}))),
        }
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        with atomic_write(path, "wb", fsync=True) as fh:
            fh.write(save(tensors, metadata=header))
        _reported.discard(str(path))
        return path

    def unusable(self) -> str | None:
        """Why entries cannot be written under ``root`` (``None`` when they can); creates ``root``."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            return "it exists and is not a folder"
        except OSError as e:
            return f"it cannot be created ({e.strerror or e})"
        try:
            fd, probe = tempfile.mkstemp(prefix=".probe.", suffix=".tmp", dir=self.root)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            return f"it is not writable ({e.strerror or e})"
        return None

    def _report_unusable(self, problem: str) -> None:
        msg = (
            f"basis cache folder {self.root} cannot be used: {problem}; the basis is computed and "
            "returned but not saved (pass a writable cache_dir, or None for no cache)"
        )
        log.warning(msg)
        warnings.warn(msg, BasisCacheWarning, stacklevel=4)

    def get_or_compute(
        self,
        fields: Mapping[str, Any],
        compute: Callable[[], Any],
        *,
        meta: Mapping[str, Any] | None = None,
    ):
        """The cached basis for ``fields``, or ``compute()`` stored then returned.

        A hit gives the warnings the computation gave (:func:`~pullback_utils.engine.solvers.basis_warnings`).
        When the folder cannot be written, a :class:`BasisCacheWarning` says so before
        ``compute()`` runs, and the basis is returned unsaved (a sweep goes on).
        """
        from pullback_utils.engine.solvers import basis_warnings

        key = self.key(fields)
        hit = self.load(key)
        if hit is not None:
            for category, message in basis_warnings(hit):
                warnings.warn(message, category, stacklevel=3)
            return hit
        problem = self.unusable()
        if problem:
            self._report_unusable(problem)
        basis = compute()
        if not problem:
            try:
                self.save(key, basis, fields=fields, meta=meta)
            except OSError as e:  # e.g. the disk filled up: keep the basis
                self._report_unusable(f"saving failed: {e}")
        info = getattr(basis, "info", None)
        if isinstance(info, dict):
            info["cache"] = {"hit": False, "key": key}
        return basis
