"""Write the model cards of the zoo (``python -m pullback_utils.zoo card NAME [--threads 1]``).

A main-zoo model's card is ``book/model_cards/<name>.md`` with its figures and numbers under
``book/model_cards/<name>/`` (``samples.png``, ``data.png``, ``loss.png``, ``neighbours.png``,
``card.json``; observations by eye in ``notes.json`` beside them). A ladder model gets a compact
card, ``book/model_cards/ladder/<name>.md`` and ``ladder/<name>/`` (samples, data, loss, card.json),
and a row in the ladder's table ``book/model_cards/ladder.md``. Each card rewrites the index pages
(:mod:`pullback_utils.zoo.card_index`).

Everything is measured from the model folder with :mod:`pullback_utils.zoo.evaluate`: samples come
from the sampler the book runs, the package's deterministic DDIM (eta = 0, no clipping), from
fixed seeds. Defaults: main zoo 256 samples (disks, shapes, shapes-text; 128 otherwise) with 50
DDIM steps; ladder :data:`LADDER_SAMPLES` samples with :data:`LADDER_DDIM_STEPS` steps (under two
minutes on one CPU thread).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from pullback_utils._io import read_json, write_json, write_text
from pullback_utils._validate import check_int, check_real
from pullback_utils.zoo import evaluate as ev
from pullback_utils.zoo.card_index import index_markdown, ladder_markdown
from pullback_utils.zoo.card_text import card_markdown, ladder_card_markdown
from pullback_utils.zoo.paths import CARDS_DIR, LADDER_CARDS
from pullback_utils.zoo.quality import write_quality
from pullback_utils.zoo.registry import (
    LADDER_DIR,
    LADDER_MODELS,
    WEIGHTS_DIR,
    ZOO_MODELS,
    check_model_name,
    default_folder,
    read_info,
)

__all__ = ["GUIDANCE_SWEEP", "LADDER_SAMPLES", "LADDER_DDIM_STEPS", "write_card", "rewrite_markdown", "write_indexes"]

GUIDANCE_SWEEP = (1.0, 2.0, 3.0)  # classifier-free guidance scales at which prompt control is measured
_SWEEP_SAMPLES = 128
LADDER_SAMPLES = 128
LADDER_DDIM_STEPS = 20
_FIT_DATA = 64  # fresh data images the fitter is checked on
_GRID_SCALE = 3


def _card_folder(name: str, out_dir: Path | str = CARDS_DIR) -> Path:
    """The folder of ``name``'s figures and ``card.json`` (its markdown is ``<folder>.md``)."""
    check_model_name(name)
    out_dir = Path(out_dir)
    return out_dir / LADDER_CARDS / name if name in LADDER_MODELS else out_dir / name


def _loss_plot(log: dict, path: Path) -> None:
    """The training loss curve (``training_log.json``: {"step", "loss"}) as a PNG, log scale."""
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


def _grid(images: torch.Tensor, path: Path) -> None:
    from pullback_utils.diffusion.images import save_grid

    save_grid(images, path, nrow=8, padding=2, pad_value=1.0, scale=_GRID_SCALE)


def _check_positive_int(value: object, name: str) -> None:
    if value is not None:
        check_int(value, f"{name}:", 1)


def _read_notes(folder: Path) -> dict | None:
    f = folder / "notes.json"
    return read_json(f) if f.is_file() else None


def write_card(
    name: str,
    model_path: Path | str | None = None,
    out_dir: Path | str | None = None,
    n_samples: int | None = None,
    ddim_steps: int | None = None,
    guidance: float = 1.0,
    device: str = "cpu",
    threads: int = 1,
    progress: bool = True,
) -> dict:
    """Measure model ``name`` (its folder: ``model_path``, default the bundled one) and write its
    card under ``out_dir`` (default ``book/model_cards``); returns the card's numbers.

    n_samples, ddim_steps: samples drawn and DDIM steps (defaults in the module docstring).
    guidance: classifier-free guidance of the text model's samples (1 = the conditional model
    alone, as the book's analyses use it); prompt control is also measured at each scale of
    :data:`GUIDANCE_SWEEP` on the first :data:`_SWEEP_SAMPLES` prompts.
    """
    from pullback_utils.zoo.datasets import make_dataset
    from pullback_utils.zoo.loading import load_model

    check_model_name(name)
    _check_positive_int(n_samples, "n_samples")
    _check_positive_int(ddim_steps, "ddim_steps")
    guidance = check_real(guidance, "guidance:")
    is_ladder = name in LADDER_MODELS
    path = Path(model_path) if model_path is not None else default_folder(name)
    out_dir = Path(out_dir) if out_dir is not None else CARDS_DIR
    info = read_info(path)
    log = read_json(path / "training_log.json", expect=object)
    cfg = read_json(path / "unet" / "config.json")
    family = ev.fit_family(info["dataset"])
    n = n_samples or (LADDER_SAMPLES if is_ladder else 256 if family is not None else 128)
    steps = ddim_steps or (LADDER_DDIM_STEPS if is_ladder else 50)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t_start = time.time()
        model = load_model(path, device=device)
        folder = _card_folder(name, out_dir)
        res: dict = {
            "name": name,
            "steps": info["steps"],
            "n_samples": n,
            "ddim_steps": steps,
            "sampler": "package-ddim",
        }
        train = make_dataset(info["dataset"], info["n_train"], info["seed"])
        fresh = make_dataset(info["dataset"], max(n, 256), ev.FRESH_SEED)
        prompts = None
        if info["kind"] == "text":
            from pullback_utils.zoo.captions import captions_for

            prompts = captions_for(
                fresh.factors[:n], {k: v[:n] for k, v in fresh.discrete.items()}, seed=ev.FRESH_SEED, drop_part=0.0
            )
            res["guidance"] = guidance
        samples = ev.sample_images(model, n, steps=steps, prompt=prompts, guidance=guidance, progress=progress)
        res["samples_finite"] = bool(torch.isfinite(samples).all())
        _grid(samples[:64], folder / "samples.png")
        _grid(train.images[:64], folder / "data.png")
        _loss_plot(log, folder / "loss.png")
        if not is_ladder:
            cond = model.encode_prompt(fresh.captions[:256]) if prompts is not None else None
            res["heldout_loss"] = ev.heldout_loss(model, fresh.images[:256], cond=cond)
        res["memorisation"], nearest = ev.memorisation(samples, fresh.images[:n], train.images)
        if not is_ladder:
            pairs = torch.stack([samples[:16], train.images[nearest[:16]]], 1).reshape(-1, 3, 32, 32)
            _grid(pairs, folder / "neighbours.png")
        if family is not None:
            res["fidelity"], fit = ev.fidelity(family, samples, fresh.images[:_FIT_DATA], progress=progress)
            if prompts is not None:
                res.update(_prompt_control(model, fit, fresh, prompts, n, steps, guidance, progress))
        res["card_wall_s"] = round(time.time() - t_start, 1)
    finally:
        torch.set_num_threads(prev_threads)
    write_json(folder / "card.json", res)
    write_quality(path, res)
    _write_markdown(name, info, res, cfg, out_dir, _weights_dir(name, path))
    return res


def _weights_dir(name: str, path: Path) -> Path:
    """The weights folder that holds model folder ``path`` (the index pages read its neighbours)."""
    return path.parent.parent if name in LADDER_MODELS else path.parent


def _prompt_control(
    model, fit: dict, fresh, prompts: list[str], n: int, steps: int, guidance: float, progress: bool
) -> dict:
    """Prompts obeyed at ``guidance`` and along :data:`GUIDANCE_SWEEP` (first :data:`_SWEEP_SAMPLES`)."""
    f, d = fresh.factors[:n], {k: v[:n] for k, v in fresh.discrete.items()}
    out = {
        "prompts_obeyed": ev.prompts_obeyed(fit, f, d),
        "prompts_chance": dict(ev.PROMPT_CHANCE),
        "example_prompts": prompts[:8],
    }
    m = min(n, _SWEEP_SAMPLES)
    sweep = {}
    for g in GUIDANCE_SWEEP:
        if g == guidance:
            sw_fit = {k: v[:m] for k, v in fit.items()}
        else:
            sw = ev.sample_images(model, m, steps=steps, prompt=prompts[:m], guidance=g, progress=progress)
            sw_fit = ev.fit_factors("shapes", sw, progress=progress)
        entry = ev.prompts_obeyed(sw_fit, f[:m], {k: v[:m] for k, v in d.items()})
        entry["explained"] = float((sw_fit["rmse"] <= ev.FIDELITY_RMSE).float().mean())
        sweep[str(g)] = entry
    out["guidance_sweep"] = {"n_samples": m, "obeyed": sweep}
    return out


def _write_markdown(name: str, info: dict, res: dict, cfg: dict, out_dir: Path, weights_dir: Path) -> None:
    """The card's markdown (with the notes by eye of *its* card folder) and the index pages."""
    folder = _card_folder(name, out_dir)
    notes = _read_notes(folder)
    text = (
        ladder_card_markdown(name, info, res, notes)
        if name in LADDER_MODELS
        else card_markdown(name, info, res, cfg, notes)
    )
    write_text(folder.with_suffix(".md"), text)
    _write_index_pages(out_dir, weights_dir)  # its neighbours as they are (no check: this model is there)


def write_indexes(out_dir: Path | str = CARDS_DIR, weights_dir: Path | str = WEIGHTS_DIR) -> None:
    """Rewrite ``index.md`` and ``ladder.md`` of ``out_dir`` from the stored cards.

    Raises ``ValueError`` (nothing written) when ``weights_dir`` is not a folder or holds none of the
    zoo's model folders (a typo would otherwise rewrite every row as "not trained")."""
    out_dir, weights_dir = Path(out_dir).expanduser(), Path(weights_dir).expanduser()
    if not weights_dir.is_dir():
        raise ValueError(
            f"weights_dir: {weights_dir} is not a folder; pass the folder that holds the zoo's "
            f"model folders (default {WEIGHTS_DIR})"
        )
    found = [n for n in ZOO_MODELS if (weights_dir / n / "zoo.json").is_file()] + [
        n for n in LADDER_MODELS if (weights_dir / LADDER_DIR / n / "zoo.json").is_file()
    ]
    if not found:
        raise ValueError(
            f"weights_dir: {weights_dir} holds none of the zoo's models (no <name>/zoo.json for "
            f"{', '.join(ZOO_MODELS)} or {LADDER_DIR}/<ladder model>/zoo.json); refusing to rewrite "
            f"the index pages of {out_dir} with every model missing"
        )
    _write_index_pages(out_dir, weights_dir)


def _write_index_pages(out_dir: Path, weights_dir: Path) -> None:
    write_text(out_dir / "index.md", index_markdown(out_dir, weights_dir))
    write_text(out_dir / "ladder.md", ladder_markdown(out_dir, weights_dir))


def rewrite_markdown(name: str, model_path: Path | str | None = None, out_dir: Path | str | None = None) -> None:
    """Rewrite ``name``'s card text, the index pages and the model folder's ``quality.json`` from the
    stored ``card.json`` (no measuring; refused when the card was measured at another step)."""
    path = Path(model_path) if model_path is not None else default_folder(name)
    out_dir = Path(out_dir) if out_dir is not None else CARDS_DIR
    card = _card_folder(name, out_dir) / "card.json"
    if not card.is_file():
        raise ValueError(
            f"name: {name!r} has no stored card ({card} is missing); measure it first with "
            f"`python -m pullback_utils.zoo card {name}`"
        )
    res = read_json(card)
    info = read_info(path)
    if res.get("steps") != info.get("steps"):
        raise ValueError(
            f"name: the stored card of {name!r} was measured at step {res.get('steps')}, but the "
            f"weights in {path} are at step {info.get('steps')}; measure it again with "
            f"`python -m pullback_utils.zoo card {name}`"
        )
    write_quality(path, res)
    if "heldout_loss" in res:
        res["heldout_loss"] = {int(k): v for k, v in res["heldout_loss"].items()}
    cfg = read_json(path / "unet" / "config.json")
    _write_markdown(name, info, res, cfg, out_dir, _weights_dir(name, path))


if __name__ == "__main__":  # alias of `python -m pullback_utils.zoo card ...`
    import runpy
    import sys

    sys.argv[1:1] = ["card"]
    runpy.run_module("pullback_utils.zoo", run_name="__main__", alter_sys=True)
