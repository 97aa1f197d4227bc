"""What a model card measures, each number from one function.

- :func:`sample_images`: samples drawn with the sampler the book runs, the package's deterministic
  DDIM (:func:`pullback_utils.diffusion.ddim.ddim_sample`, eta = 0, no x_0 clipping; the final images are
  clamped to [-1, 1]) from the fixed noise ``model.noise(n, seed)``;
- :func:`heldout_loss`: mean squared error per pixel of the noise estimate
  (:meth:`~pullback_utils.models.diffusion_model.DiffusionModel.eps`, whatever the network predicts) on fresh images;
- :func:`memorisation`: per-pixel RMS distance of each sample to its nearest training image,
  against the same for fresh data from the generator (a memorising model has samples much closer
  to the training set than fresh data is);
- :func:`fidelity`: the renderer fitted to every sample and to fresh data
  (:mod:`pullback_utils.zoo.fitting`): share explained within :data:`FIDELITY_RMSE`, share of
  clean shapes (visible, foreground IoU >= :data:`CLEAN_IOU`), medians;
- :func:`prompts_obeyed`: for the text model, whether the fitted shape, colours, position cell and
  size word match the prompt's.
"""

from __future__ import annotations

import math

import torch

from pullback_utils._validate import check_int
from pullback_utils.zoo.fitting import (  # noqa: F401  (re-exported: the card's measurements)
    FIT_ROTATIONS,
    VISIBLE_CONTRAST,
    VISIBLE_SIZE,
    fit_factors,
    fit_family,
    foreground_iou,
    visible,
)
from pullback_utils.zoo.vocab import COLOUR_NAMES, PALETTE, SHAPES

__all__ = [
    "FIDELITY_RMSE",
    "CLEAN_IOU",
    "LOSS_TIMESTEPS",
    "FRESH_SEED",
    "SAMPLE_SEED",
    "PROMPT_CHANCE",
    "sample_images",
    "heldout_loss",
    "nearest_distances",
    "memorisation",
    "fidelity",
    "prompts_obeyed",
    "fit_factors",
    "foreground_iou",
    "visible",
]

FIDELITY_RMSE = 0.04
CLEAN_IOU = 0.9  # foreground IoU with the fitted rendering at which a sample counts as a clean shape
LOSS_TIMESTEPS = (10, 50, 100, 250, 500, 750, 999)  # U-Net timesteps (levels 11 ... 1000)
FRESH_SEED = 10_007
SAMPLE_SEED = 1234
#: Chance of obeying each prompt attribute by guessing (the text model's prompts).
PROMPT_CHANCE: dict[str, float] = {
    "shape": 1 / len(SHAPES),
    "colour": 1 / len(COLOUR_NAMES),
    "background": 1 / (len(COLOUR_NAMES) - 1),
    "position": 1 / 9,
    "size": 1 / 3,
}


def sample_images(
    model,
    n: int,
    *,
    steps: int,
    seed: int = SAMPLE_SEED,
    prompt=None,
    guidance: float = 1.0,
    batch: int = 128,
    progress: bool = True,
) -> torch.Tensor:
    """(n, 3, 32, 32) samples in [-1, 1] on the CPU from ``model`` (a
    :class:`~pullback_utils.models.diffusion_model.DiffusionModel`): the package's deterministic DDIM from level T to
    clean data in ``steps`` steps, started from ``model.noise(n, seed)``, ``batch`` at a time (the
    same samples whatever ``batch``).

    prompt: ``None``, one prompt, ``n`` prompts (a list) or encoder hidden states (n, L, D) of a
    text model; guidance: classifier-free guidance scale (1 = the conditional model alone).
    """
    from tqdm.auto import tqdm

    from pullback_utils.diffusion.ddim import ddim_sample

    check_int(n, "n:", 1), check_int(steps, "steps:", 1)
    if isinstance(prompt, (list, torch.Tensor)) and len(prompt) not in (1, n):
        raise ValueError(f"prompt: expected 1 or n={n} prompts, got {len(prompt)}")
    x_all = model.noise(n, seed)
    out = []
    for i in tqdm(range(0, n, batch), desc=f"DDIM {steps} steps", disable=not progress):
        p = prompt[i : i + batch] if isinstance(prompt, (list, torch.Tensor)) and len(prompt) == n else prompt
        x = ddim_sample(model, x_all[i : i + batch], 1.0, 0, steps=steps, prompt=p, guidance_scale=guidance)
        out.append(model.to_image(x).clamp(-1, 1).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def heldout_loss(
    model,
    images: torch.Tensor,
    timesteps: tuple[int, ...] = LOSS_TIMESTEPS,
    cond: torch.Tensor | None = None,
    seed: int = 0,
    batch: int = 128,
) -> dict[int, float]:
    """Mean squared epsilon error per pixel on ``images`` (N, 3, 32, 32) at each U-Net timestep.

    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps with ``abar_t = alphas_cumprod[t]`` (level t + 1
    of the package's time convention), eps drawn from ``seed``; the network's output is read as
    eps by ``model.eps`` (v- and x_0-predicting models are converted). cond: (N, L, D) encoder
    hidden states of a text model (``None``: the unconditional branch).
    """
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=gen)
    res = {}
    for t in timesteps:
        a = float(model.alphas_cumprod[t])
        tot = 0.0
        for i in range(0, len(images), batch):
            x0, eps = images[i : i + batch], noise[i : i + batch]
            xt = (math.sqrt(a) * x0 + math.sqrt(1 - a) * eps).to(model.device, model.dtype)
            c = cond[i : i + batch] if cond is not None else None
            pred = model.eps(xt, int(t) + 1, c).float().cpu()
            tot += float(((pred - eps) ** 2).mean(dim=(1, 2, 3)).sum())
        res[int(t)] = tot / len(images)
    return res


def nearest_distances(
    queries: torch.Tensor, train: torch.Tensor, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel RMS distance (in [0, 1] pixel units) of each query to its nearest training image.

    queries: (Q, 3, 32, 32), train: (N, 3, 32, 32), both in [-1, 1]. Returns (distances (Q,), index (Q,)).
    """
    q = ((queries + 1) / 2).reshape(len(queries), -1)
    best = torch.full((len(q),), float("inf"))
    idx = torch.zeros(len(q), dtype=torch.long)
    qn = (q * q).sum(1, keepdim=True)
    for i in range(0, len(train), chunk):
        tr = ((train[i : i + chunk] + 1) / 2).reshape(-1, q.shape[1])
        d2 = (qn - 2 * q @ tr.T + (tr * tr).sum(1)[None]).clamp_min(0)
        m, j = d2.min(1)
        upd = m < best
        best = torch.where(upd, m, best)
        idx = torch.where(upd, j + i, idx)
    return (best / q.shape[1]).sqrt(), idx


def memorisation(samples: torch.Tensor, fresh: torch.Tensor, train: torch.Tensor) -> tuple[dict, torch.Tensor]:
    """The memorisation check of samples (S, 3, 32, 32) against fresh data (F, ...) from the
    generator, both measured by their nearest training image (``train`` (N, ...), all in [-1, 1]).

    Returns (numbers, index (S,) of each sample's nearest training image). The share of samples
    closer to the training set than 95 % of fresh data is about 5 % without memorisation.
    """
    d_s, i_s = nearest_distances(samples, train)
    d_f, _ = nearest_distances(fresh, train)
    p05 = d_f.quantile(0.05)
    return {
        "sample_nn_median": float(d_s.median()),
        "fresh_nn_median": float(d_f.median()),
        "sample_nn_p05": float(d_s.quantile(0.05)),
        "fresh_nn_p05": float(p05),
        "share_samples_closer_than_fresh_p05": float((d_s < p05).float().mean()),
        "n_train": int(len(train)),
    }, i_s


def fidelity(family: str, samples: torch.Tensor, data: torch.Tensor, progress: bool = True) -> tuple[dict, dict]:
    """Fidelity numbers of ``samples`` and of real ``data`` (the fitter check) under the renderer
    ``family``; returns (numbers, the samples' fit)."""
    fs = fit_factors(family, samples, progress=progress)
    fd = fit_factors(family, data, progress=progress)
    vis = visible(family, fs)
    ok = fs["rmse"] <= FIDELITY_RMSE
    iou_s, iou_d = foreground_iou(family, samples, fs), foreground_iou(family, data, fd)
    return {
        "family": family,
        "n_data": int(len(data)),
        "threshold_rmse": FIDELITY_RMSE,
        "samples_explained": float(ok.float().mean()),
        "samples_visible": float(vis.float().mean()),
        "samples_explained_visible": float((ok & vis).float().mean()),
        "samples_median_rmse": float(fs["rmse"].median()),
        "data_explained": float((fd["rmse"] <= FIDELITY_RMSE).float().mean()),
        "data_median_rmse": float(fd["rmse"].median()),
        "iou_threshold": CLEAN_IOU,
        "samples_clean": float(((iou_s >= CLEAN_IOU) & vis).float().mean()),
        "samples_median_iou": float(iou_s.median()),
        "data_clean": float(((iou_d >= CLEAN_IOU) & visible(family, fd)).float().mean()),
        "data_median_iou": float(iou_d.median()),
    }, fs


def _nearest_palette(rgb: torch.Tensor) -> torch.Tensor:
    """Index into :data:`PALETTE` of the nearest named colour to each RGB row (N, 3) in [0, 1]."""
    pal = torch.tensor(list(PALETTE.values()))
    return torch.cdist(rgb, pal).argmin(1)


def prompts_obeyed(fit: dict, factors: torch.Tensor, discrete: dict[str, torch.Tensor]) -> dict:
    """Share of samples whose fitted renderer (``fit``: :func:`fit_factors` output for n samples)
    matches the prompted attributes, from the prompts' true ``factors`` (n, K) and ``discrete``
    labels: shape type, foreground / background colour (nearest palette colour), position cell
    (3x3), size word, colour and shape together, and everything at once."""
    from pullback_utils.zoo.captions import POS_EDGES, SIZE_EDGES, _third

    ff, f, d = fit["factors"], factors, discrete
    ok = {
        "shape": fit["shape"] == d["shape"],
        "colour": _nearest_palette(ff[:, 4:7].clamp(0, 1)) == d["fg"],
        "background": _nearest_palette(ff[:, 7:10].clamp(0, 1)) == d["bg"],
        "position": torch.tensor(
            [
                (_third(float(a), POS_EDGES), _third(float(b), POS_EDGES))
                == (_third(float(c), POS_EDGES), _third(float(e), POS_EDGES))
                for a, b, c, e in zip(ff[:, 0], ff[:, 1], f[:, 0], f[:, 1])
            ]
        ),
        "size": torch.tensor(
            [_third(float(a), SIZE_EDGES) == _third(float(b), SIZE_EDGES) for a, b in zip(ff[:, 2], f[:, 2])]
        ),
    }
    ok["colour+shape"] = ok["colour"] & ok["shape"]
    ok["all"] = ok["colour+shape"] & ok["background"] & ok["position"] & ok["size"]
    return {k: float(v.float().mean()) for k, v in ok.items()}
