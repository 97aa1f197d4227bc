"""Train a zoo model: ``python -m pullback_utils.zoo.train NAME [--steps N] [--device cpu|cuda] ...``.

Seeded and resumable. The full training state (weights, EMA, optimizer, step, RNG, loss log) is
checkpointed to ``<cache-dir>/<name>/state.pt`` (default ``.cache/zoo-train`` at the repository
root, git-ignored); the bundled model folder ``pullback_utils/zoo/weights/<name>/`` receives the EMA
weights, ``zoo.json`` and ``training_log.json``. A later run continues from the checkpoint, or, when
the cache is gone, warm-starts from the bundled weights (EMA weights as both model and EMA, step and
loss log from the folder; the optimizer restarts). ``--steps`` is the total step count to reach.

Recipe (all models): DDPM, 1000 training steps, linear betas 1e-4..0.02, v-prediction
(v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0; MSE loss on v), uniform t, pixel range [-1, 1]; AdamW (lr 8e-4 after a 200-step warm-up, weight decay 0;
optionally annealed, ``--decay-from S --lr-final LR``: cosine from step S to ``--steps``),
gradient clipping at 1, EMA of the weights (decay min(0.999, (1+s)/(10+s))). The training set is a
fixed draw of ``n_train`` images (seed ``seed``); batches are drawn with replacement.
Text model: captions replaced by ``""`` with probability 0.1 (classifier-free guidance).

Why v-prediction: with epsilon prediction, the short CPU trainings left the noise prediction at
large t too inaccurate for deterministic DDIM (eta = 0): its x_0 estimate, amplified by
1/sqrt(abar_t) (about 150 at t = 999), drove the samples off the data (grey, grainy backgrounds),
while ancestral sampling and DDIM from t <= 600 were fine. A v-predicting network estimates x_0
stably at every t; the schedule's ``prediction_type`` tells samplers how to read the output.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from pullback_utils.zoo.registry import DEFAULT_CHANNELS, MODELS, default_folder
from pullback_utils.zoo.registry import check_model_name as _catalogue_entry

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = REPO_ROOT / ".cache" / "zoo-train"
NUM_TRAIN_TIMESTEPS = 1000
CAPTION_DROPOUT = 0.1
TEXT_MAX_LENGTH = 16
LOG_EVERY = 25
PREDICTION_TYPE = "v_prediction"


def check_model_name(name: str) -> None:
    _catalogue_entry(name)


TINY_CHANNELS = (16, 32, 32)


def check_channels(channels) -> tuple[int, int, int]:
    """Validate ``block_out_channels``: three positive multiples of 8 (group norm with 8 groups,
    attention heads of width 8); returns them as a tuple."""
    try:
        ch = tuple(int(c) for c in channels)
    except (TypeError, ValueError):
        ch = ()
    if len(ch) != 3 or any(c < 8 or c % 8 for c in ch) or tuple(channels) != ch:
        raise ValueError(f"channels: expected three positive multiples of 8 (block_out_channels, "
                         f"e.g. {DEFAULT_CHANNELS}), got {channels!r}")
    return ch


def build_unet(kind: str, tiny: bool = False, channels: tuple[int, int, int] | None = None
               ) -> torch.nn.Module:
    """The zoo U-Net for ``kind`` ``"pixel"`` (``UNet2DModel``) or ``"text"`` (``UNet2DConditionModel``).

    Channels (32, 64, 64), one ResNet layer per block (1.11M parameters for ``"pixel"``).
    Input x: (B, 3, 32, 32) in [-1, 1]; resolutions 32 -> 16 -> 8, the last down block
    (attention / cross-attention) and the mid block (attention) at 8x8; mid-block h: (B, 64, 8, 8).
    Text: encoder_hidden_states (B, 16, 384). ``tiny`` gives a small variant for tests;
    ``channels`` overrides ``block_out_channels`` (a larger model for a GPU run, e.g. (64, 128, 128)).
    """
    from diffusers import UNet2DConditionModel, UNet2DModel

    ch = check_channels(channels) if channels is not None else (TINY_CHANNELS if tiny else DEFAULT_CHANNELS)
    common = dict(sample_size=32, in_channels=3, out_channels=3, block_out_channels=ch,
                  layers_per_block=1, norm_num_groups=8, attention_head_dim=8)
    if kind == "pixel":
        return UNet2DModel(
            down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), **common)
    if kind == "text":
        return UNet2DConditionModel(
            down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
            cross_attention_dim=384, **common)
    raise ValueError(f"kind: expected 'pixel' or 'text', got {kind!r}")


def make_scheduler():
    """The training noise schedule (DDPM, 1000 steps, linear betas 1e-4..0.02, v-prediction)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_schedule="linear",
                         beta_start=1e-4, beta_end=0.02, prediction_type=PREDICTION_TYPE,
                         clip_sample=True)


def hardware_string(device: str, threads: int) -> str:
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


def _caption_embeddings(captions: list[str], cache_file: Path | None, device: str
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unique-caption embeddings (U, 16, 384) fp16, per-image index (N,), and the "" embedding (16, 384)."""
    uniq = sorted(set(captions))
    pos = {c: i for i, c in enumerate(uniq)}
    index = torch.tensor([pos[c] for c in captions])
    if cache_file is not None and cache_file.is_file():
        blob = torch.load(cache_file)
        if blob["captions"] == uniq:
            return blob["emb"], index, blob["uncond"]
    from tqdm.auto import tqdm

    from pullback_utils.zoo.text_encoder import MiniLMTextEncoder

    enc = MiniLMTextEncoder(device=device, max_length=TEXT_MAX_LENGTH)
    chunks = [enc.encode(uniq[i:i + 256]).half().cpu()
              for i in tqdm(range(0, len(uniq), 256), desc="encoding captions")]
    emb = torch.cat(chunks)
    uncond = enc.encode([""])[0].cpu()
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"captions": uniq, "emb": emb, "uncond": uncond}, cache_file)
    return emb, index, uncond


def learning_rate(step: int, lr: float, warmup: int, steps: int, decay_from: int | None = None,
                  lr_final: float | None = None) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warm-up over ``warmup`` steps to
    ``lr``, constant, then (if ``decay_from`` is given) cosine annealing to ``lr_final`` at ``steps``."""
    if decay_from is not None and step >= decay_from:
        frac = min(1.0, (step - decay_from) / max(1, steps - decay_from))
        return lr_final + (lr - lr_final) * 0.5 * (1.0 + math.cos(math.pi * frac))
    return lr * min(1.0, (step + 1) / warmup) if warmup > 0 else lr


def _previous_runs(out_dir: Path) -> list[dict]:
    """The run records of the model folder's ``zoo.json`` (folders from before run records get one
    summary record of their steps, learning rate and batch size)."""
    f = out_dir / "zoo.json"
    if not f.is_file():
        return []
    info = json.loads(f.read_text())
    if "runs" in info:
        return list(info["runs"])
    return [{"from_step": 0, "to_step": int(info.get("steps", 0)), "lr": info.get("lr"),
             "decay_from": None, "lr_final": None, "batch_size": info.get("batch_size"),
             "hardware": info.get("hardware"), "wall_s": info.get("train_wall_s"),
             "note": "summary of the runs before per-run records were kept"}]


@dataclass
class TrainResult:
    """Outcome of :func:`train`: total step reached, final smoothed loss, output folder."""

    step: int
    loss: float
    out_dir: Path
    wall_s: float
    s_per_step: float


def save_model_folder(out_dir: Path, name: str, ema: torch.nn.Module, info: dict, log: dict) -> None:
    """Write the diffusers folder (EMA ``unet/``, ``scheduler/``, ``model_index.json``), ``zoo.json``
    and ``training_log.json`` of model ``name`` into ``out_dir``."""
    import diffusers

    out_dir.mkdir(parents=True, exist_ok=True)
    ema.save_pretrained(out_dir / "unet", safe_serialization=True)
    make_scheduler().save_pretrained(out_dir / "scheduler")
    unet_cls = type(ema).__name__
    (out_dir / "model_index.json").write_text(json.dumps({
        "_class_name": "DDPMPipeline", "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "DDPMScheduler"], "unet": ["diffusers", unet_cls]}, indent=2) + "\n")
    (out_dir / "zoo.json").write_text(json.dumps(info, indent=2) + "\n")
    (out_dir / "training_log.json").write_text(json.dumps(log) + "\n")


def train(name: str, steps: int, *, batch_size: int = 16, lr: float = 8e-4, device: str = "cpu",
          seed: int | None = None, threads: int = 1, max_minutes: float | None = None,
          out_dir: Path | str | None = None, cache_dir: Path | str | None = DEFAULT_CACHE,
          tiny: bool = False, n_train: int = 20000, save_every: int = 500,
          warmup: int = 200, ema_decay: float = 0.999, progress: bool = True,
          decay_from: int | None = None, lr_final: float | None = None,
          channels: tuple[int, int, int] | None = None) -> TrainResult:
    """Train (or continue training) zoo model ``name`` until ``steps`` total steps.

    Args:
        name: one of :data:`MODELS`.
        steps: total number of optimizer steps to reach (>= 1); a resumed run continues from its step.
        batch_size: images per step. lr: peak learning rate. device: ``"cpu"`` or ``"cuda"``.
        seed: seeds the training set, the batch order, noise and initial weights (default: the
            catalogue's seed of ``name``; ladder models fix their seed in their name).
        threads: torch CPU threads. max_minutes: stop (cleanly, saving) after this wall time.
        out_dir: model folder (default ``pullback_utils/zoo/weights/<name>``).
        cache_dir: folder of the resumable state (``None``: no checkpointing beyond ``out_dir``).
        tiny: small U-Net and no more than 512 training images (tests).
        n_train: training-set size. save_every: checkpoint period in steps.
        decay_from, lr_final: optional cosine annealing of the learning rate from ``lr`` at step
            ``decay_from`` to ``lr_final`` at step ``steps`` (constant ``lr`` before); both or neither.
        channels: the U-Net's ``block_out_channels`` (default: the catalogue's, (32, 64, 64) for the
            main zoo and (16, 32, 32) for the ladder; tiny: (16, 32, 32)); a run that resumes must use
            the channels it was started with.
        warmup: linear warm-up steps of the learning rate (0: none).

    A run resumed from a checkpoint must use the checkpoint's ``seed`` and ``batch_size`` (another
    seed would draw another training set); train into a new ``cache_dir``/``out_dir`` instead.

    Returns:
        :class:`TrainResult`.
    """
    entry = _catalogue_entry(name)
    if seed is None:
        seed = int(entry["seed"])
    elif "rung" in entry and seed != entry["seed"]:
        raise ValueError(f"seed: ladder model {name!r} is trained with seed {entry['seed']} (its name says so), "
                         f"got seed={seed}; train ladder-{entry['rung']}-s{seed} instead")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup: must be an int >= 0, got {warmup!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr: must be a finite number > 0, got {lr!r}")
    if steps < 1:
        raise ValueError(f"steps: must be >= 1, got {steps}")
    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    if n_train < 1:
        raise ValueError(f"n_train: must be >= 1, got {n_train}")
    if channels is not None:
        channels = check_channels(channels)
    elif not tiny:
        channels = tuple(entry["channels"])
    if (decay_from is None) != (lr_final is None):
        raise ValueError("decay_from, lr_final: give both (cosine annealing) or neither (constant lr)")
    if decay_from is not None and not 0 <= decay_from < steps:
        raise ValueError(f"decay_from: must be in [0, steps={steps}), got {decay_from}")
    if lr_final is not None and not 0.0 <= lr_final <= lr:
        raise ValueError(f"lr_final: must be in [0, lr={lr}], got {lr_final}")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' requested but torch.cuda.is_available() is False")
    from tqdm.auto import tqdm

    from pullback_utils.zoo.datasets import make_dataset

    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    spec = MODELS[name]
    kind = spec["kind"]
    out_dir = Path(out_dir) if out_dir is not None else default_folder(name)
    state_file = Path(cache_dir) / name / "state.pt" if cache_dir is not None else None
    if tiny:
        n_train = min(n_train, 512)

    t_data = time.time()
    data = make_dataset(spec["dataset"], n_train, seed)
    images = data.images.to(device)
    if kind == "text":
        emb_file = Path(cache_dir) / name / f"captions-{n_train}-{seed}.pt" if cache_dir else None
        cap_emb, cap_index, uncond = _caption_embeddings(data.captions, emb_file, device)
        cap_emb, cap_index, uncond = cap_emb.to(device), cap_index.to(device), uncond.to(device)
    t_data = time.time() - t_data

    torch.manual_seed(seed)
    model = build_unet(kind, tiny, channels).to(device).train()
    ch = tuple(model.config.block_out_channels)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = make_scheduler()
    acp = sched.alphas_cumprod.to(device)
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    step, wall_prev = 0, 0.0
    log: dict = {"step": [], "loss": [], "wall_s": []}
    resumed = "fresh"
    if state_file is not None and state_file.is_file():
        st = torch.load(state_file, map_location=device, weights_only=True)
        if st.get("tiny") != tiny or st.get("kind") != kind:
            raise ValueError(f"cache_dir: checkpoint {state_file} was written with another config")
        for key, val in (("seed", seed), ("batch_size", batch_size)):
            if key in st and int(st[key]) != int(val):
                raise ValueError(f"{key}: checkpoint {state_file} was trained with {key}={st[key]}, not {val}; "
                                 f"resume with {key}={st[key]}, or pass a new cache_dir and out_dir to start "
                                 f"another run")
        st_ch = tuple(st.get("channels", TINY_CHANNELS if tiny else DEFAULT_CHANNELS))
        if st_ch != ch:
            raise ValueError(f"channels: checkpoint {state_file} was trained with channels "
                             f"{st_ch}, not {ch}; pass those channels, or a new "
                             f"cache_dir and out_dir to train another size")
        model.load_state_dict(st["model"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"].to(gen.get_state().device) if device == "cpu" else st["gen"])
        torch.set_rng_state(st["torch_rng"])
        step, wall_prev, log = st["step"], st["wall_s"], st["log"]
        resumed = f"checkpoint {state_file} (step {step})"
    elif (out_dir / "zoo.json").is_file() and (out_dir / "unet").is_dir():
        info_old = json.loads((out_dir / "zoo.json").read_text())
        if "seed" in info_old and int(info_old["seed"]) != int(seed):
            raise ValueError(f"seed: the model folder {out_dir} was trained with seed={info_old['seed']}, not "
                             f"{seed} (another seed draws another training set); pass seed={info_old['seed']}, "
                             f"or a new out_dir to start another run")
        old_ch = tuple(json.loads((out_dir / "unet" / "config.json").read_text())["block_out_channels"])
        if old_ch != ch:
            raise ValueError(f"channels: the model folder {out_dir} holds a U-Net with channels "
                             f"{old_ch}, not {ch}; pass those channels, or a new out_dir to train "
                             f"another size")
        cls = type(model)
        bundled = cls.from_pretrained(out_dir / "unet").to(device)
        model.load_state_dict(bundled.state_dict())
        ema.load_state_dict(bundled.state_dict())
        step = int(info_old.get("steps", 0))
        wall_prev = float(info_old.get("train_wall_s", 0.0))
        if (out_dir / "training_log.json").is_file():
            log = json.loads((out_dir / "training_log.json").read_text())
        torch.manual_seed(seed + step)
        gen.manual_seed(seed + 1 + step)
        resumed = f"bundled weights {out_dir} (step {step}; optimizer restarted)"
    n_params = sum(p.numel() for p in model.parameters())
    runs = _previous_runs(out_dir) if resumed != "fresh" else []
    if runs and runs[-1]["to_step"] != step:  # the checkpoint holds steps the folder never recorded
        runs.append({"from_step": runs[-1]["to_step"], "to_step": step, "lr": None,
                     "decay_from": None, "lr_final": None, "batch_size": None, "hardware": None,
                     "wall_s": None, "note": "steps of the resumed checkpoint that no model-folder "
                                             "record covers (a run that stopped before writing it)"})

    stop = {"flag": False}

    def _on_signal(signum, frame):  # finish the current step, then save
        stop["flag"] = True

    old_handlers = ({s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
                    if threading.current_thread() is threading.main_thread() else {})

    def checkpoint(wall: float) -> None:
        if state_file is None:
            return
        state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = state_file.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                    "gen": gen.get_state(), "torch_rng": torch.get_rng_state(), "step": step,
                    "wall_s": wall, "log": log, "tiny": tiny, "kind": kind, "channels": list(ch),
                    "seed": int(seed), "batch_size": int(batch_size)}, tmp)
        os.replace(tmp, state_file)

    t0 = time.time()
    start_step = step
    run_losses: list[float] = []
    bar = tqdm(total=steps, initial=min(step, steps), desc=f"train {name}", disable=not progress,
               dynamic_ncols=True)
    try:
        while step < steps and not stop["flag"]:
            if max_minutes is not None and time.time() - t0 > 60 * max_minutes:
                break
            idx = torch.randint(n_train, (batch_size,), generator=gen, device=device)
            x0 = images[idx]
            noise = torch.randn(x0.shape, generator=gen, device=device)
            t = torch.randint(NUM_TRAIN_TIMESTEPS, (batch_size,), generator=gen, device=device)
            a = acp[t].view(-1, 1, 1, 1)
            xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
            if kind == "text":
                cond = cap_emb[cap_index[idx]].float()
                drop = torch.rand(batch_size, generator=gen, device=device) < CAPTION_DROPOUT
                cond = torch.where(drop.view(-1, 1, 1), uncond.expand_as(cond), cond)
                pred = model(xt, t, encoder_hidden_states=cond).sample
            else:
                pred = model(xt, t).sample
            target = a.sqrt() * noise - (1 - a).sqrt() * x0  # v
            loss = torch.nn.functional.mse_loss(pred, target)
            for g in opt.param_groups:
                g["lr"] = learning_rate(step, lr, warmup, steps, decay_from, lr_final)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            d = min(ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 1 - d)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"training loss became {loss.item()} at step {step}")
            run_losses.append(loss.item())
            if step % LOG_EVERY == 0 or step == steps:
                log["step"].append(step)
                log["loss"].append(sum(run_losses) / len(run_losses))
                log["wall_s"].append(wall_prev + time.time() - t0)
                run_losses = []
            bar.update(1)
            bar.set_postfix(loss=f"{(log['loss'][-1] if log['loss'] else loss.item()):.4f}")
            if save_every and step % save_every == 0:
                checkpoint(wall_prev + time.time() - t0)
    finally:
        bar.close()
        for s, h in old_handlers.items():
            signal.signal(s, h)
        torch.set_num_threads(prev_threads)
        wall = wall_prev + time.time() - t0
        if step > start_step:
            if run_losses:
                log["step"].append(step)
                log["loss"].append(sum(run_losses) / len(run_losses))
                log["wall_s"].append(wall)
            checkpoint(wall)
            n_steps_run = step - start_step
            s_per_step = (time.time() - t0) / max(1, n_steps_run)
            hardware = hardware_string(device, threads)
            info = {
                "name": name, "kind": kind, "dataset": spec["dataset"],
                "image_range": [-1.0, 1.0], "resolution": 32, "channels": 3,
                "prediction_type": PREDICTION_TYPE, "num_train_timesteps": NUM_TRAIN_TIMESTEPS,
                "beta_schedule": "linear", "steps": step, "batch_size": batch_size, "lr": lr,
                "ema_decay": ema_decay, "seed": seed, "n_train": n_train, "n_params": n_params,
                "train_wall_s": round(wall, 1), "last_run_s_per_step": round(s_per_step, 4),
                "hardware": hardware, "tiny": tiny,
                **({"rung": entry["rung"]} if "rung" in entry else {}),
                "block_out_channels": list(ch),
                "data_time_s": round(t_data, 1),
                "final_loss": log["loss"][-1] if log["loss"] else None,
                "runs": runs + [{"from_step": start_step, "to_step": step, "lr": lr,
                                 "warmup": warmup, "decay_from": decay_from, "lr_final": lr_final,
                                 "target_steps": steps, "batch_size": batch_size,
                                 "hardware": hardware,
                                 "wall_s": round(time.time() - t0, 1),
                                 "s_per_step": round(s_per_step, 4)}],
            }
            if kind == "text":
                info.update({"text_encoder": "minilm", "text_max_length": TEXT_MAX_LENGTH,
                             "max_length": TEXT_MAX_LENGTH,
                             "cross_attention_dim": 384, "caption_dropout": CAPTION_DROPOUT,
                             "uncond_prompt": ""})
            save_model_folder(out_dir, name, ema, info, log)
            print(f"{name}: step {step} (ran {n_steps_run} steps, {s_per_step:.3f} s/step, resumed "
                  f"from {resumed}); saved {out_dir}", file=sys.stderr)
    final = log["loss"][-1] if log["loss"] else float("nan")
    n_run = step - start_step
    return TrainResult(step, final, out_dir, wall, (time.time() - t0) / max(1, n_run))


def _parse_channels(text: str) -> tuple[int, int, int]:
    try:
        return check_channels(tuple(int(c) for c in text.split(",")))
    except ValueError:
        raise SystemExit(f"--channels: expected three comma-separated multiples of 8 such as "
                         f"64,128,128, got {text!r}") from None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="zoo model: " + ", ".join(n for n in MODELS if not n.startswith("ladder-"))
                   + " or ladder-<rung>-s<seed>")
    p.add_argument("--steps", type=int, default=15000, help="total steps to reach")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=8e-4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=None, help="default: the catalogue's seed of the model")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-minutes", type=float, default=None, help="stop cleanly after this wall time")
    p.add_argument("--out-dir", default=None, help="model folder (default: the bundled zoo folder)")
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    p.add_argument("--n-train", type=int, default=20000)
    p.add_argument("--save-every", type=int, default=500)
    p.add_argument("--decay-from", type=int, default=None,
                   help="anneal the learning rate (cosine) from this step to --steps")
    p.add_argument("--lr-final", type=float, default=None, help="learning rate reached at --steps")
    p.add_argument("--channels", default=None,
                   help="U-Net block_out_channels, comma-separated (default 32,64,64; e.g. 64,128,128 "
                        "for a larger model on a GPU, with a new --out-dir)")
    p.add_argument("--tiny", action="store_true", help="tiny U-Net and data (smoke tests)")
    p.add_argument("--no-card", action="store_true", help="do not (re)write the model card")
    p.add_argument("--warmup", type=int, default=200, help="learning-rate warm-up steps")
    a = p.parse_args(argv)
    try:
        check_model_name(a.name)
    except ValueError as e:
        p.error(str(e))
    res = train(a.name, a.steps, batch_size=a.batch_size, lr=a.lr, device=a.device, seed=a.seed,
                threads=a.threads, max_minutes=a.max_minutes, out_dir=a.out_dir,
                cache_dir=a.cache_dir, tiny=a.tiny, n_train=a.n_train, save_every=a.save_every,
                decay_from=a.decay_from, lr_final=a.lr_final, warmup=a.warmup,
                channels=_parse_channels(a.channels) if a.channels else None)
    print(f"{a.name}: step {res.step}, loss {res.loss:.4f}, {res.s_per_step:.3f} s/step")
    if not a.no_card:
        from pullback_utils.zoo.cards import write_card

        write_card(a.name, model_path=res.out_dir, device=a.device, threads=a.threads)


if __name__ == "__main__":
    main()
