"""The worker side of distributed basis sweeps: how a worker rebuilds the driver's model and computes a basis.

A worker never receives the driver's :class:`~pullback_utils.models.diffusion_model.DiffusionModel` object when it can
rebuild it: a :class:`ModelSpec` names it instead --

- ``source``: what :func:`pullback_utils.load_model` takes (a bundled name or a folder, which on a
  cluster must exist on every node: a shared folder);
- ``random_seed``: the model is the random-weight control of ``source``
  (:func:`pullback_utils.analysis.baselines.random_weight_model` with that seed, rebuilt on the worker);
- ``model``: otherwise, the model itself, shipped once (its VAE and text encoder left out: a basis needs
  only the U-Net; the driver encodes the prompt).

Every rebuilt model is checked against the driver's weights (``fingerprint``, the sha256 of the U-Net's
class, config and weights that also keys the basis cache), so a node with another version of a model
folder gives one clear error, never different numbers. A worker process keeps the last model it built
(:func:`_worker_model`), so a model is loaded once per worker, not once per basis.

:class:`BasisWorker` is the Ray actor (``ray.remote(BasisWorker)`` in :mod:`pullback_utils.sweeps.distributed`);
:func:`compute_task` is what a ``concurrent.futures`` executor runs.
"""

from __future__ import annotations

import copy
import os
import re
import threading
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["ModelSpec", "BasisTask", "compute_task", "BasisWorker"]

_RANDOM_NAME = re.compile(r"^(?P<base>.*) \(random weights, seed (?P<seed>\d+)\)$")


@dataclass(frozen=True)
class ModelSpec:
    """How a worker rebuilds a model (module doc). ``fingerprint`` is the driver's U-Net fingerprint."""

    fingerprint: str
    name: str
    source: str | None = None
    random_seed: int | None = None
    dtype: str = "float32"
    model: Any = None

    @classmethod
    def of(cls, model: Any) -> "ModelSpec":
        """The spec of a :class:`~pullback_utils.models.diffusion_model.DiffusionModel`: by name when the name loads
        (a bundled model or a folder, possibly with the random-weight suffix), else the model itself."""
        name = str(getattr(model, "name", ""))
        dtype = str(model.dtype).removeprefix("torch.")
        m = _RANDOM_NAME.match(name)
        base, seed = (m.group("base"), int(m.group("seed"))) if m else (name, None)
        if _loadable(base):
            return cls(fingerprint=model.fingerprint, name=name, source=base, random_seed=seed, dtype=dtype)
        return cls(fingerprint=model.fingerprint, name=name, dtype=dtype, model=_slim(model))

    @property
    def key(self) -> str:
        return self.fingerprint

    def describe(self) -> str:
        if self.source is None:
            return f"model {self.name!r} (shipped to the workers)"
        what = f"load_model({self.source!r})"
        return what + (f" with random weights (seed {self.random_seed})" if self.random_seed is not None else "")

    def build(self, device: str = "cpu") -> Any:
        """The model on ``device``, checked against ``fingerprint``; ``RuntimeError`` naming the mismatch."""
        if self.source is None:
            model = copy.copy(self.model)
            # a private copy: threads of one process would otherwise share (and re-patch) one module
            model.unet = copy.deepcopy(model.unet).to(device)
            model._fingerprint = None
        else:
            from pullback_utils.zoo.loading import load_model

            model = load_model(self.source, device=device, dtype=getattr(torch, self.dtype))
            if self.random_seed is not None:
                from pullback_utils.analysis.baselines import random_weight_model

                model = random_weight_model(model, seed=self.random_seed)
            model = _slim(model)
        if model.fingerprint != self.fingerprint:
            raise RuntimeError(
                f"{self.describe()} on this worker has other weights than the driver's model {self.name!r} "
                f"(U-Net fingerprint {model.fingerprint[:12]} here, {self.fingerprint[:12]} on the driver): the "
                "model folder or package version differs on this node"
            )
        return model


def _loadable(name: str) -> bool:
    if not name:
        return False
    if os.path.isdir(os.path.expanduser(name)):
        return True
    from pullback_utils.zoo.registry import is_bundled

    return is_bundled(name)


def _slim(model: Any) -> Any:
    """A shallow copy without VAE, text encoder and prompt memo: what a basis at given conditioning needs."""
    out = copy.copy(model)
    out.vae, out.text_encoder, out.tokenizer = None, None, None
    out._prompt_memo = {}
    return out


@dataclass(frozen=True)
class BasisTask:
    """One basis of a sweep: ``index`` in the sweep, the state ``x`` ``(1, *sample_shape)`` and time ``t``;
    ``k``, ``layer``, the driver-encoded conditioning ``cond`` ``(1, L, D)`` or ``None``, solver options."""

    index: int
    x: torch.Tensor
    t: Any
    k: int
    layer: str
    cond: torch.Tensor | None
    solver: dict


_local = threading.local()  # per thread: a thread pool's workers do not share a model (its modules are stateful)


def _worker_model(spec: ModelSpec, device: str = "cpu") -> Any:
    """The model of ``spec`` in this worker (thread), built on first use and kept until another is asked for."""
    held = getattr(_local, "held", None)
    if held is None or held[0] != (spec.key, device):
        _local.held = None  # free the previous model before building the next
        _local.held = ((spec.key, device), spec.build(device))
    return _local.held[1]


def _compute(model: Any, task: BasisTask) -> Any:
    import warnings

    with warnings.catch_warnings():  # the driver replays a basis's warnings from its info
        warnings.simplefilter("ignore")
        basis = model.local_basis(task.x, task.t, task.k, prompt=task.cond, layer=task.layer, **task.solver)
    basis.v, basis.u, basis.s = (getattr(basis, n).detach().to("cpu") for n in ("v", "u", "s"))
    return basis


def compute_task(spec: ModelSpec, task: BasisTask, threads: int | None = None) -> Any:
    """What an executor runs: the basis of ``task`` with the model of ``spec`` (kept per worker)."""
    if threads:
        torch.set_num_threads(int(threads))
    return _compute(_worker_model(spec), task)


class BasisWorker:
    """A Ray actor holding one model: ``ready()`` reports it (or why it could not be built), ``compute(task)``
    returns the task's basis. Build errors are kept and reported by ``ready()``, so a worker that cannot
    load the model is one clear error, not a restart loop."""

    def __init__(self, spec: ModelSpec, threads: int) -> None:
        import socket

        torch.set_num_threads(int(threads))
        self.info = {"pid": os.getpid(), "host": socket.gethostname(), "threads": int(threads)}
        self.error = None
        try:
            import ray

            gpus = ray.get_gpu_ids()
            self.device = "cuda" if gpus and torch.cuda.is_available() else "cpu"
            self.model = spec.build(self.device)
        except Exception as exc:  # noqa: BLE001 - reported through ready()
            self.model = None
            self.device = "cpu"
            self.error = f"{type(exc).__name__}: {exc}"
        self.info["device"] = self.device

    def ready(self) -> dict:
        return {**self.info, "error": self.error, "fingerprint": None if self.model is None else self.model.fingerprint}

    def compute(self, task: BasisTask) -> Any:
        if self.model is None:
            raise RuntimeError(f"this worker could not build the model: {self.error}")
        return _compute(self.model, task)
