"""The records of a zoo model folder: ``zoo.json`` (the model's facts and one record per training
run), ``training_log.json`` and the diffusers folder (EMA ``unet/``, ``scheduler/``,
``model_index.json``), written atomically by :func:`save_model_folder`.

A run record: ``from_step``, ``to_step``, ``lr``, ``warmup``, ``decay_from``, ``lr_final``,
``target_steps``, ``batch_size``, ``loss_weighting`` (and ``snr_gamma``), ``hardware``, ``wall_s``,
``s_per_step``; steps that no record covers get one with ``lr: None`` and a ``note``.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from pullback_utils._io import give_default_mode, write_json
from pullback_utils.zoo.checkpoint import TrainState
from pullback_utils.zoo.registry import MODELS, read_info
from pullback_utils.zoo.unet import (
    CROSS_ATTENTION_DIM,
    NUM_TRAIN_TIMESTEPS,
    PREDICTION_TYPE,
    TEXT_MAX_LENGTH,
    make_scheduler,
)

__all__ = ["hardware_string", "run_history", "model_info", "save_model_folder"]


def hardware_string(device: str, threads: int) -> str:
    """The GPU's name, or the CPU model with the torch thread count and the machine's cores."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU ({cpu}), {threads} torch thread(s), {os.cpu_count()} cores on the machine"


def _previous_runs(out_dir: Path) -> list[dict]:
    """The run records of the model folder's ``zoo.json`` (folders from before run records get one
    summary record of their steps, learning rate and batch size)."""
    if not (out_dir / "zoo.json").is_file():
        return []
    info = read_info(out_dir)
    if "runs" in info:
        return list(info["runs"])
    return [
        {
            "from_step": 0,
            "to_step": int(info.get("steps", 0)),
            "lr": info.get("lr"),
            "decay_from": None,
            "lr_final": None,
            "batch_size": info.get("batch_size"),
            "hardware": info.get("hardware"),
            "wall_s": info.get("train_wall_s"),
            "note": "summary of the runs before per-run records were kept",
        }
    ]


def run_history(out_dir: Path, st: TrainState) -> list[dict]:
    """The folder's earlier run records, plus an explicit record of the steps a resumed checkpoint
    holds beyond them (a run that stopped before writing the folder)."""
    runs = _previous_runs(out_dir) if st.resumed != "fresh" else []
    if runs and runs[-1]["to_step"] != st.step:
        runs.append(
            {
                "from_step": runs[-1]["to_step"],
                "to_step": st.step,
                "lr": None,
                "decay_from": None,
                "lr_final": None,
                "batch_size": None,
                "hardware": None,
                "wall_s": None,
                "note": "steps of the resumed checkpoint that no model-folder "
                "record covers (a run that stopped before writing it)",
            }
        )
    return runs


def save_model_folder(out_dir: Path, name: str, ema: torch.nn.Module, info: dict, log: dict) -> None:
    """Write the diffusers folder (EMA ``unet/``, ``scheduler/``, ``model_index.json``), ``zoo.json``
    and ``training_log.json`` of model ``name`` into ``out_dir``."""
    import diffusers

    out_dir.mkdir(parents=True, exist_ok=True)
    ema.save_pretrained(out_dir / "unet", safe_serialization=True)
    make_scheduler().save_pretrained(out_dir / "scheduler")
    for sub in ("unet", "scheduler"):  # safetensors are written 0600: give them the umask's mode
        give_default_mode(out_dir / sub)
    write_json(
        out_dir / "model_index.json",
        {
            "_class_name": "DDPMPipeline",
            "_diffusers_version": diffusers.__version__,
            "scheduler": ["diffusers", "DDPMScheduler"],
            "unet": ["diffusers", type(ema).__name__],
        },
    )
    write_json(out_dir / "zoo.json", info)
    write_json(out_dir / "training_log.json", log, indent=None)
    from pullback_utils.diffusion.weights import write_weights_digest

    write_weights_digest(out_dir)  # load_model checks the weights against it


def model_info(
    name: str,
    st: TrainState,
    *,
    n_train: int,
    seed: int,
    batch_size: int,
    lr: float,
    ema_decay: float,
    tiny: bool,
    wall: float,
    s_per_step: float,
    hardware: str,
    data_wall_s: float,
    runs: list[dict],
    caption_dropout: float,
) -> dict:
    """The model folder's ``zoo.json`` after a run that reached ``st.step``."""
    entry = MODELS[name]
    info = {
        "name": name,
        "kind": entry["kind"],
        "dataset": entry["dataset"],
        "image_range": [-1.0, 1.0],
        "resolution": 32,
        "channels": 3,
        "prediction_type": PREDICTION_TYPE,
        "num_train_timesteps": NUM_TRAIN_TIMESTEPS,
        "beta_schedule": "linear",
        "steps": st.step,
        "batch_size": batch_size,
        "lr": lr,
        "ema_decay": ema_decay,
        "seed": seed,
        "n_train": n_train,
        "n_params": sum(p.numel() for p in st.model.parameters()),
        "train_wall_s": round(wall, 1),
        "last_run_s_per_step": round(s_per_step, 4),
        "hardware": hardware,
        "tiny": tiny,
        **({"rung": entry["rung"]} if "rung" in entry else {}),
        "block_out_channels": list(st.model.config.block_out_channels),
        "data_time_s": round(data_wall_s, 1),
        "final_loss": st.log["loss"][-1] if st.log["loss"] else None,
        "runs": runs,
    }
    if entry["kind"] == "text":
        info.update(
            {
                "text_encoder": "minilm",
                "text_max_length": TEXT_MAX_LENGTH,
                "max_length": TEXT_MAX_LENGTH,
                "cross_attention_dim": CROSS_ATTENTION_DIM,
                "caption_dropout": caption_dropout,
                "uncond_prompt": "",
            }
        )
    return info
