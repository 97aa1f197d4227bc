"""Train a zoo model (``python -m pullback_utils.zoo train NAME [--steps N] [--device cpu|cuda] ...``).

Seeded and resumable. The full training state (weights, EMA, optimizer, step, RNG, loss log) is
checkpointed to ``<cache-dir>/<name>/state.pt`` (default ``.cache/zoo-train`` at the repository
root, git-ignored; loaded with ``weights_only=True``); the model folder (default
:func:`~pullback_utils.zoo.registry.default_folder`) receives the EMA weights, ``zoo.json`` and
``training_log.json``. A later run continues from the checkpoint, or, when the cache is gone,
warm-starts from the model folder (EMA weights as both model and EMA, step and loss log from the
folder; the optimizer restarts). ``steps`` is the total step count to reach.

Recipe (all models): DDPM, 1000 training steps, linear betas 1e-4..0.02, v-prediction
(v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0; MSE loss on v, optionally min-SNR-gamma weighted:
:func:`loss_weights`), uniform t, pixel range [-1, 1]; AdamW (lr 8e-4 after a 200-step warm-up,
weight decay 0; optionally annealed, ``decay_from=S, lr_final=LR``: cosine from step S to
``steps``), gradient clipping at 1, EMA of the weights (decay min(0.999, (1+s)/(10+s))). The
training set is a fixed draw of ``n_train`` images (seed ``seed``); batches are drawn with
replacement. Text model: captions replaced by ``""`` with probability 0.1 (classifier-free guidance).

Why v-prediction: with epsilon prediction, the short CPU trainings left the noise prediction at
large t too inaccurate for deterministic DDIM (eta = 0): its x_0 estimate, amplified by
1/sqrt(abar_t) (about 150 at t = 999), drove the samples off the data (grey, grainy backgrounds),
while ancestral sampling and DDIM from t <= 600 were fine. A v-predicting network estimates x_0
stably at every t; the schedule's ``prediction_type`` tells samplers how to read the output.
"""

from __future__ import annotations

import copy
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from pullback_utils._validate import check_int, check_real, is_real
from pullback_utils.features.basis import freeze
from pullback_utils.zoo.checkpoint import TrainState, check_resume, resume_checkpoint, save_checkpoint, warm_start
from pullback_utils.zoo.paths import DEFAULT_CACHE, REPO_ROOT  # noqa: F401  (re-exported)
from pullback_utils.zoo.recipe import LOSS_WEIGHTINGS, check_loss_weighting, learning_rate, loss_weights  # noqa: F401  (re-exported)
from pullback_utils.zoo.records import hardware_string, model_info, run_history, save_model_folder  # noqa: F401
from pullback_utils.zoo.registry import DEFAULT_CHANNELS, MODELS, canonical_name, default_folder  # noqa: F401
from pullback_utils.zoo.registry import check_model_name as _catalogue_entry
from pullback_utils.zoo.unet import (  # noqa: F401  (re-exported: the old home of the architecture)
    NUM_TRAIN_TIMESTEPS,
    PREDICTION_TYPE,
    TEXT_MAX_LENGTH,
    TINY_CHANNELS,
    build_unet,
    check_channels,
    make_scheduler,
)

_CAPTION_DROPOUT = 0.1
_LOG_EVERY = 25
_GLOBAL_RNG = threading.Lock()  # held while a model is built or restored (side-by-side training)


@dataclass
class TrainResult:
    """Outcome of :func:`train`: total step reached, final smoothed loss, output folder."""

    step: int
    loss: float
    out_dir: Path
    wall_s: float
    s_per_step: float


@dataclass
class _Data:
    """The fixed training draw: images (N, 3, 32, 32) on the device; text models also hold the
    unique-caption embeddings (U, 16, 384), each image's caption index (N,) and the "" embedding."""

    images: torch.Tensor
    cap_emb: torch.Tensor | None = None
    cap_index: torch.Tensor | None = None
    uncond: torch.Tensor | None = None
    wall_s: float = 0.0


def _caption_embeddings(
    captions: list[str], cache_file: Path | None, device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unique-caption embeddings (U, 16, 384) fp16, per-image index (N,), and the "" embedding (16, 384)."""
    uniq = sorted(set(captions))
    pos = {c: i for i, c in enumerate(uniq)}
    index = torch.tensor([pos[c] for c in captions])
    if cache_file is not None and cache_file.is_file():
        blob = torch.load(cache_file, weights_only=True)
        if blob["captions"] == uniq:
            return blob["emb"], index, blob["uncond"]
    from tqdm.auto import tqdm

    from pullback_utils.zoo.text_encoder import MiniLMTextEncoder

    enc = MiniLMTextEncoder(device=device, max_length=TEXT_MAX_LENGTH)
    chunks = [
        enc.encode(uniq[i : i + 256]).half().cpu() for i in tqdm(range(0, len(uniq), 256), desc="encoding captions")
    ]
    emb = torch.cat(chunks)
    uncond = enc.encode([""])[0].cpu()
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"captions": uniq, "emb": emb, "uncond": uncond}, cache_file)
    return emb, index, uncond


def _training_data(name: str, n_train: int, seed: int, cache_dir: Path | None, device: str) -> _Data:
    from pullback_utils.zoo.datasets import make_dataset

    t0 = time.time()
    spec = MODELS[name]
    data = make_dataset(spec["dataset"], n_train, seed)
    out = _Data(data.images.to(device))
    if spec["kind"] == "text":
        emb_file = cache_dir / name / f"captions-{n_train}-{seed}.pt" if cache_dir else None
        emb, index, uncond = _caption_embeddings(data.captions, emb_file, device)
        out.cap_emb, out.cap_index, out.uncond = emb.to(device), index.to(device), uncond.to(device)
    out.wall_s = time.time() - t0
    return out


def _train_step(
    st: TrainState, data: _Data, acp: torch.Tensor, *, batch_size: int, lr: float, weighting: str, snr_gamma: float
) -> float:
    """One optimizer step at learning rate ``lr`` (noise, t and caption dropout drawn from ``st.gen``
    in that order, so that a resumed run continues the same stream); returns the batch loss."""
    dev = data.images.device
    idx = torch.randint(len(data.images), (batch_size,), generator=st.gen, device=dev)
    x0 = data.images[idx]
    noise = torch.randn(x0.shape, generator=st.gen, device=dev)
    t = torch.randint(NUM_TRAIN_TIMESTEPS, (batch_size,), generator=st.gen, device=dev)
    a = acp[t].view(-1, 1, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    if data.cap_emb is not None:
        cond = data.cap_emb[data.cap_index[idx]].float()
        drop = torch.rand(batch_size, generator=st.gen, device=dev) < _CAPTION_DROPOUT
        cond = torch.where(drop.view(-1, 1, 1), data.uncond.expand_as(cond), cond)
        pred = st.model(xt, t, encoder_hidden_states=cond).sample
    else:
        pred = st.model(xt, t).sample
    target = a.sqrt() * noise - (1 - a).sqrt() * x0  # v
    if weighting == "none":
        loss = torch.nn.functional.mse_loss(pred, target)
    else:
        per = ((pred - target) ** 2).mean(dim=(1, 2, 3))
        loss = (loss_weights(acp[t], weighting, snr_gamma) * per).mean()
    for g in st.opt.param_groups:
        g["lr"] = lr
    st.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(st.model.parameters(), 1.0)
    st.opt.step()
    st.step += 1
    if not math.isfinite(loss.item()):
        raise FloatingPointError(f"training loss became {loss.item()} at step {st.step}")
    return loss.item()


def _update_ema(st: TrainState, ema_decay: float) -> None:
    """EMA of the weights after step ``st.step``: decay min(ema_decay, (1 + s) / (10 + s))."""
    d = min(ema_decay, (1 + st.step) / (10 + st.step))
    with torch.no_grad():
        for pe, pm in zip(st.ema.parameters(), st.model.parameters()):
            pe.lerp_(pm, 1 - d)


def train(
    name: str,
    steps: int,
    *,
    batch_size: int = 16,
    lr: float = 8e-4,
    device: str = "cpu",
    seed: int | None = None,
    threads: int = 1,
    max_minutes: float | None = None,
    out_dir: Path | str | None = None,
    cache_dir: Path | str | None = DEFAULT_CACHE,
    tiny: bool = False,
    n_train: int = 20000,
    save_every: int = 500,
    warmup: int = 200,
    ema_decay: float = 0.999,
    progress: bool = True,
    decay_from: int | None = None,
    lr_final: float | None = None,
    channels: tuple[int, int, int] | None = None,
    loss_weighting: str = "none",
    snr_gamma: float = 5.0,
    stop_event: threading.Event | None = None,
) -> TrainResult:
    """Train (or continue training) zoo model ``name`` until ``steps`` total steps.

    Args:
        name: one of :data:`MODELS`.
        steps: total number of optimizer steps to reach (>= 1); a resumed run continues from its step.
        batch_size: images per step. lr: peak learning rate. device: ``"cpu"`` or ``"cuda"``.
        seed: seeds the training set, the batch order, noise and initial weights (default: the
            catalogue's seed of ``name``; ladder models fix their seed in their name).
        threads: torch CPU threads. max_minutes: stop (cleanly, saving) after this wall time.
        out_dir: model folder (default :func:`~pullback_utils.zoo.registry.default_folder`).
        cache_dir: folder of the resumable state (``None``: no checkpointing beyond ``out_dir``).
        tiny: small U-Net and no more than 512 training images (tests).
        n_train: training-set size. save_every: checkpoint period in steps.
        decay_from, lr_final: optional cosine annealing of the learning rate from ``lr`` at step
            ``decay_from`` to ``lr_final`` at step ``steps`` (constant ``lr`` before); both or neither.
        channels: the U-Net's ``block_out_channels`` (default: the catalogue's, (32, 64, 64) for the
            main zoo and (16, 32, 32) for the ladder; tiny: (16, 32, 32)); a run that resumes must use
            the channels it was started with.
        warmup: linear warm-up steps of the learning rate (0: none).
        loss_weighting: ``"none"`` (plain MSE on v) or ``"min-snr"`` (:func:`loss_weights`, with
            ``snr_gamma``); recorded in the run's record, so a run may change it.
        stop_event: when set (by another thread), finish the current step, save and return: how
            :mod:`pullback_utils.zoo.side_by_side` stops models trained in threads (SIGTERM and
            Ctrl-C do the same for a run in the main thread).

    A run resumed from a checkpoint must use the checkpoint's ``seed`` and ``batch_size`` (another
    seed would draw another training set); train into a new ``cache_dir``/``out_dir`` instead.

    Returns:
        :class:`TrainResult`.
    """
    entry = _catalogue_entry(name)
    if seed is None:
        seed = int(entry["seed"])
    seed = check_int(seed, "seed:", 0)
    if "rung" in entry and seed != entry["seed"]:
        raise ValueError(
            f"seed: ladder model {name!r} is trained with seed {entry['seed']} (its name says so), "
            f"got seed={seed}; train ladder-{entry['rung']}-s{seed} instead"
        )
    elif "replica_of" in entry and seed != entry["seed"]:
        raise ValueError(
            f"seed: {name!r} is the seed-{entry['seed']} replicate of {entry['replica_of']!r} (its "
            f"name says so), got seed={seed}; train {entry['replica_of']}-s{seed} instead"
        )
    name = canonical_name(name)
    check_int(warmup, "warmup:", 0)
    if not is_real(lr) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr: must be a finite number > 0, got {lr!r}")
    steps, batch_size, n_train = (
        check_int(v, f"{key}:", 1) for key, v in (("steps", steps), ("batch_size", batch_size), ("n_train", n_train))
    )
    threads = check_int(threads, "threads:", 1)
    save_every = check_int(save_every, "save_every:", 0)
    if max_minutes is not None:
        max_minutes = check_real(max_minutes, "max_minutes:", positive=True)
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
    check_loss_weighting(loss_weighting, snr_gamma)
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' requested but torch.cuda.is_available() is False")
    from tqdm.auto import tqdm

    kind = entry["kind"]
    out_dir = Path(out_dir) if out_dir is not None else default_folder(name)
    cache_dir = Path(cache_dir) if cache_dir is not None else None
    state_file = cache_dir / name / "state.pt" if cache_dir is not None else None
    n_train = min(n_train, 512) if tiny else n_train
    check_resume(state_file, out_dir, n_train=n_train, device=device)  # before the data are built
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    data = _training_data(name, n_train, seed, cache_dir, device)

    with _GLOBAL_RNG:  # initial weights come from torch's global generator: one model at a time
        torch.manual_seed(seed)
        model = build_unet(kind, tiny, channels).to(device).train()
        st = TrainState(
            model,
            freeze(copy.deepcopy(model)),
            torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0),
            torch.Generator(device=device).manual_seed(seed + 1),
        )
        if state_file is not None and state_file.is_file():
            resume_checkpoint(
                st, state_file, tiny=tiny, kind=kind, seed=seed, batch_size=batch_size, device=device, n_train=n_train
            )
        elif (out_dir / "zoo.json").is_file() and (out_dir / "unet").is_dir():
            warm_start(st, out_dir, seed=seed, device=device, n_train=n_train)
    runs = run_history(out_dir, st)
    acp = make_scheduler().alphas_cumprod.to(device)
    ck = dict(tiny=tiny, kind=kind, seed=seed, batch_size=batch_size, n_train=n_train)

    stop = {"flag": False}

    def _on_signal(signum, frame):  # finish the current step, then save
        stop["flag"] = True

    old_handlers = (
        {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        if threading.current_thread() is threading.main_thread()
        else {}
    )
    t0 = time.time()
    start_step = st.step
    window: list[float] = []  # losses since the last log entry

    def log_window() -> None:
        st.log["step"].append(st.step)
        st.log["loss"].append(sum(window) / len(window))
        st.log["wall_s"].append(st.wall_prev + time.time() - t0)
        window.clear()

    bar = tqdm(total=steps, initial=min(st.step, steps), desc=f"train {name}", disable=not progress, dynamic_ncols=True)
    try:
        while st.step < steps and not stop["flag"] and not (stop_event is not None and stop_event.is_set()):
            if max_minutes is not None and time.time() - t0 > 60 * max_minutes:
                break
            window.append(
                _train_step(
                    st,
                    data,
                    acp,
                    batch_size=batch_size,
                    lr=learning_rate(st.step, lr, warmup, steps, decay_from, lr_final),
                    weighting=loss_weighting,
                    snr_gamma=snr_gamma,
                )
            )
            _update_ema(st, ema_decay)
            if st.step % _LOG_EVERY == 0 or st.step == steps:
                log_window()
            bar.update(1)
            bar.set_postfix(loss=f"{st.log['loss'][-1] if st.log['loss'] else window[-1]:.4f}")
            if save_every and st.step % save_every == 0:
                save_checkpoint(st, state_file, st.wall_prev + time.time() - t0, **ck)
    finally:
        bar.close()
        for s, h in old_handlers.items():
            signal.signal(s, h)
        torch.set_num_threads(prev_threads)
        wall = st.wall_prev + time.time() - t0
        n_run = st.step - start_step
        s_per_step = (time.time() - t0) / max(1, n_run)
        if n_run > 0:
            if window:
                log_window()
            save_checkpoint(st, state_file, wall, **ck)
            hardware = hardware_string(device, threads)
            run = {
                "from_step": start_step,
                "to_step": st.step,
                "lr": lr,
                "warmup": warmup,
                "decay_from": decay_from,
                "lr_final": lr_final,
                "target_steps": steps,
                "batch_size": batch_size,
                "loss_weighting": loss_weighting,
                **({"snr_gamma": float(snr_gamma)} if loss_weighting == "min-snr" else {}),
                "hardware": hardware,
                "wall_s": round(time.time() - t0, 1),
                "s_per_step": round(s_per_step, 4),
            }
            info = model_info(
                name,
                st,
                n_train=n_train,
                seed=seed,
                batch_size=batch_size,
                lr=lr,
                ema_decay=ema_decay,
                tiny=tiny,
                wall=wall,
                s_per_step=s_per_step,
                hardware=hardware,
                data_wall_s=data.wall_s,
                runs=runs + [run],
                caption_dropout=_CAPTION_DROPOUT,
            )
            save_model_folder(out_dir, name, st.ema, info, st.log)
            print(
                f"{name}: step {st.step} (ran {n_run} steps, {s_per_step:.3f} s/step, resumed "
                f"from {st.resumed}); saved {out_dir}",
                file=sys.stderr,
            )
    final = st.log["loss"][-1] if st.log["loss"] else float("nan")
    return TrainResult(st.step, final, out_dir, wall, s_per_step)


if __name__ == "__main__":  # alias of `python -m pullback_utils.zoo train ...`
    import runpy

    sys.argv[1:1] = ["train"]
    runpy.run_module("pullback_utils.zoo", run_name="__main__", alter_sys=True)
