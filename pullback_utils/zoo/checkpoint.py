"""The resumable training state of a zoo model: in memory (:class:`TrainState`) and on disk.

A checkpoint ``<cache-dir>/<name>/state.pt`` is a dict of tensors and plain values (loadable with
``torch.load(..., weights_only=True)``: no pickled code runs) with the keys ``model``, ``ema``,
``opt`` (state dicts), ``gen`` (the batch generator's state), ``torch_rng``, ``step``, ``wall_s``,
``log`` ({"step", "loss", "wall_s"} lists), ``tiny``, ``kind``, ``channels``, ``seed``,
``batch_size`` and ``n_train``. Without a checkpoint a run can warm-start from a model folder's EMA weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from pullback_utils._io import atomic_write, read_json
from pullback_utils.zoo.registry import DEFAULT_CHANNELS, read_info
from pullback_utils.zoo.unet import TINY_CHANNELS

__all__ = ["TrainState", "check_resume", "resume_checkpoint", "warm_start", "save_checkpoint"]


@dataclass
class TrainState:
    """Everything a checkpoint holds, in memory; ``resumed`` says where it came from."""

    model: torch.nn.Module
    ema: torch.nn.Module
    opt: torch.optim.Optimizer
    gen: torch.Generator
    step: int = 0
    wall_prev: float = 0.0
    log: dict = field(default_factory=lambda: {"step": [], "loss": [], "wall_s": []})
    resumed: str = "fresh"


def _read_checkpoint(state_file: Path, device: str) -> dict:
    """The checkpoint's dict; ``ValueError`` naming the file and what to do when it cannot be read."""
    try:
        ck = torch.load(state_file, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated, garbled, not a torch file, unpickling refused
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(
            f"cache_dir: the training checkpoint {state_file} is damaged and cannot be read "
            f"({type(e).__name__}: {first[:200]}); delete it to restart from the model folder's weights "
            f"(or from scratch), or pass another cache_dir"
        ) from None
    if not isinstance(ck, dict) or not {"model", "ema", "opt", "step"} <= set(ck):
        raise ValueError(
            f"cache_dir: {state_file} is not a training checkpoint of this package (expected a dict "
            f"with model, ema, opt, step, ...); delete it or pass another cache_dir"
        )
    return ck


def check_resume(state_file: Path | None, out_dir: Path, *, n_train: int, device: str = "cpu") -> None:
    """Before any data are built: ``ValueError`` when the run would resume (from ``state_file`` or the
    model folder ``out_dir``) with another training-set size than the steps it continues (the folder's
    record would then claim the new size for every step), or when ``state_file`` is damaged."""
    if state_file is not None and Path(state_file).is_file():
        ck = _read_checkpoint(Path(state_file), device)
        if "n_train" in ck and int(ck["n_train"]) != int(n_train):
            raise ValueError(
                f"n_train: checkpoint {state_file} was trained on n_train={ck['n_train']} images, not "
                f"{n_train}; resume with n_train={ck['n_train']}, or pass a new cache_dir and out_dir "
                f"to start another run"
            )
    info = read_info(out_dir) if (Path(out_dir) / "zoo.json").is_file() else {}
    if "n_train" in info and int(info["n_train"]) != int(n_train):
        raise ValueError(
            f"n_train: the model folder {out_dir} was trained on n_train={info['n_train']} images, "
            f"not {n_train} (its record covers every step); pass n_train={info['n_train']}, "
            f"or a new out_dir to start another run"
        )


def resume_checkpoint(
    st: TrainState,
    state_file: Path,
    *,
    tiny: bool,
    kind: str,
    seed: int,
    batch_size: int,
    device: str,
    n_train: int | None = None,
) -> None:
    """Load ``state_file`` into ``st`` after checking that it was written with this config
    (``ValueError`` naming the file when it is damaged or was written with another seed, batch size,
    training-set size or U-Net)."""
    ck = _read_checkpoint(state_file, device)
    if ck.get("tiny") != tiny or ck.get("kind") != kind:
        raise ValueError(f"cache_dir: checkpoint {state_file} was written with another config")
    for key, val in (("seed", seed), ("batch_size", batch_size), ("n_train", n_train)):
        if val is None:
            continue
        if key in ck and int(ck[key]) != int(val):
            raise ValueError(
                f"{key}: checkpoint {state_file} was trained with {key}={ck[key]}, not {val}; "
                f"resume with {key}={ck[key]}, or pass a new cache_dir and out_dir to start "
                f"another run"
            )
    ch = tuple(st.model.config.block_out_channels)
    ck_ch = tuple(ck.get("channels", TINY_CHANNELS if tiny else DEFAULT_CHANNELS))
    if ck_ch != ch:
        raise ValueError(
            f"channels: checkpoint {state_file} was trained with channels {ck_ch}, not {ch}; "
            f"pass those channels, or a new cache_dir and out_dir to train another size"
        )
    st.model.load_state_dict(ck["model"])
    st.ema.load_state_dict(ck["ema"])
    st.opt.load_state_dict(ck["opt"])
    st.gen.set_state(ck["gen"].to(st.gen.get_state().device) if device == "cpu" else ck["gen"])
    torch.set_rng_state(ck["torch_rng"])
    st.step, st.wall_prev, st.log = ck["step"], ck["wall_s"], ck["log"]
    st.resumed = f"checkpoint {state_file} (step {st.step})"


def warm_start(st: TrainState, out_dir: Path, *, seed: int, device: str, n_train: int | None = None) -> None:
    """Load the model folder's EMA weights, step and loss log into ``st`` (the optimizer restarts)."""
    info = read_info(out_dir)
    if "seed" in info and int(info["seed"]) != int(seed):
        raise ValueError(
            f"seed: the model folder {out_dir} was trained with seed={info['seed']}, not "
            f"{seed} (another seed draws another training set); pass seed={info['seed']}, "
            f"or a new out_dir to start another run"
        )
    if n_train is not None and "n_train" in info and int(info["n_train"]) != int(n_train):
        raise ValueError(
            f"n_train: the model folder {out_dir} was trained on n_train={info['n_train']} images, "
            f"not {n_train} (its record covers every step); pass n_train={info['n_train']}, "
            f"or a new out_dir to start another run"
        )
    ch = tuple(st.model.config.block_out_channels)
    old_ch = tuple(read_json(out_dir / "unet" / "config.json")["block_out_channels"])
    if old_ch != ch:
        raise ValueError(
            f"channels: the model folder {out_dir} holds a U-Net with channels {old_ch}, not "
            f"{ch}; pass those channels, or a new out_dir to train another size"
        )
    bundled = type(st.model).from_pretrained(out_dir / "unet").to(device)
    st.model.load_state_dict(bundled.state_dict())
    st.ema.load_state_dict(bundled.state_dict())
    st.step = int(info.get("steps", 0))
    st.wall_prev = float(info.get("train_wall_s", 0.0))
    if (out_dir / "training_log.json").is_file():
        st.log = read_json(out_dir / "training_log.json", expect=object)
    torch.manual_seed(seed + st.step)
    st.gen.manual_seed(seed + 1 + st.step)
    st.resumed = f"bundled weights {out_dir} (step {st.step}; optimizer restarted)"


def save_checkpoint(
    st: TrainState,
    state_file: Path | None,
    wall: float,
    *,
    tiny: bool,
    kind: str,
    seed: int,
    batch_size: int,
    n_train: int | None = None,
) -> None:
    """Write ``state_file`` atomically (keys: model ema opt gen torch_rng step wall_s log tiny kind
    channels seed batch_size n_train; all loadable with ``weights_only=True``)."""
    if state_file is None:
        return
    with atomic_write(state_file, "wb") as f:
        torch.save(
            {
                "model": st.model.state_dict(),
                "ema": st.ema.state_dict(),
                "opt": st.opt.state_dict(),
                "gen": st.gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "step": st.step,
                "wall_s": wall,
                "log": st.log,
                "tiny": tiny,
                "kind": kind,
                "channels": list(st.model.config.block_out_channels),
                "seed": int(seed),
                "batch_size": int(batch_size),
                **({"n_train": int(n_train)} if n_train is not None else {}),
            },
            f,
        )
