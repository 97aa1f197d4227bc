"""The appendix's overview pages, from the stored cards: the zoo's index and the ladder's table.

- :func:`index_markdown`: ``book/model_cards/index.md``, one row per main-zoo model in the zoo's
  order (:data:`~pullback_utils.zoo.registry.ZOO_MODELS`);
- :func:`ladder_markdown`: ``book/model_cards/ladder.md``, one row per ladder model (rung, factors,
  seed, steps, clean share, median IoU, memorisation), models without weights as "not trained".

Both read only ``zoo.json`` of each model folder and ``card.json`` / ``notes.json`` of each card
folder, so they can be rewritten at any time without measuring anything.
"""

from __future__ import annotations

from pathlib import Path

from pullback_utils._io import read_json
from pullback_utils.zoo import ladder
from pullback_utils.zoo.card_text import CLI
from pullback_utils.zoo.paths import CARDS_DIR, LADDER_CARDS
from pullback_utils.zoo.registry import (
    LADDER_DIR,
    LADDER_RECIPE,
    LADDER_SEEDS,
    MODELS,
    WEIGHTS_DIR,
    ZOO_MODELS,
    ladder_name,
    read_info,
)

__all__ = ["INDEX_DATA", "index_markdown", "ladder_markdown", "ladder_order"]

_INDEX_HEAD = """# Appendix: model cards of the bundled zoo

The book runs offline on a laptop with small diffusion models that the project trains itself
(`pullback_utils/zoo/`). They share one architecture (a 32x32 RGB `UNet2DModel` with attention at
the 8x8 level and in the mid block), so that the training data is the only variable across the
ladder `disks` → `shapes` → `scenes` → `textures`; `shapes-text` adds cross-attention on MiniLM
token embeddings. The dataset-complexity ladder's models, trained with one shared recipe on five
nested rungs of one renderer, have a table of their own: [the ladder](ladder.md).
"""

INDEX_DATA = {
    "disks": "one disk on black",
    "shapes": "one shape on a plain colour",
    "shapes-text": "`shapes` with captions",
    "scenes": "2–3 overlapping shapes on a gradient",
    "textures": "crops of bundled photographs",
}

_INDEX_FOOT = f"""Retrain or continue training with `{CLI} train NAME --steps N` (it resumes from
`.cache/zoo-train/NAME/` or, without it, warm-starts from the bundled weights; the options
`--decay-from S` and `--lr-final LR` anneal the learning rate), then regenerate the card with
`{CLI} card NAME`. Every number on a card and in this table is measured on the bundled weights by
that command; the verdicts by eye come from `book/model_cards/NAME/notes.json`.
"""


def _steps(folder: Path) -> int | None:
    return int(read_info(folder)["steps"]) if (folder / "zoo.json").is_file() else None


def index_markdown(cards_dir: Path | str = CARDS_DIR, weights_dir: Path | str = WEIGHTS_DIR) -> str:
    """The appendix's index page: one row per model with its training steps, the measured scores of
    its card (``card.json``) and the one-line verdict by eye (``notes.json`` ``"summary"``), so that
    a reader sees at a glance where each model falls short. Models without a card say so."""
    cards_dir, weights_dir = Path(cards_dir), Path(weights_dir)
    rows = ["| model | data | steps | measured | by eye | card |", "|---|---|---|---|---|---|"]
    for name in ZOO_MODELS:
        steps = _steps(weights_dir / name)
        card, notes = cards_dir / name / "card.json", cards_dir / name / "notes.json"
        res, notes = (read_json(f) if f.is_file() else None for f in (card, notes))
        measured, eye = "no card yet", "–"
        if res is not None:
            parts = []
            if "fidelity" in res:
                fi = res["fidelity"]
                what = "disk" if name == "disks" else "shape"
                parts.append(
                    f"{100 * fi.get('samples_explained_visible', fi['samples_explained']):.0f} % "
                    f"of samples fit a rendered {what} within RMS {fi['threshold_rmse']}"
                )
                if "samples_clean" in fi:
                    parts.append(
                        f"{100 * fi['samples_clean']:.0f} % are clean {what}s (foreground IoU "
                        f">= {fi['iou_threshold']}; data: {100 * fi['data_clean']:.0f} %)"
                    )
            if "prompts_obeyed" in res:
                po = res["prompts_obeyed"]
                parts.append(
                    "prompt words obeyed (guidance "
                    + str(res.get("guidance"))
                    + "): "
                    + ", ".join(
                        f"{k} {100 * po[k]:.0f} %" for k in ("colour", "background", "position", "size", "shape")
                    )
                )
            mem = res["memorisation"]["share_samples_closer_than_fresh_p05"]
            parts.append(f"{100 * mem:.0f} % of samples nearer the training set than 95 % of fresh data (5 % expected)")
            measured = "; ".join(parts)
            if res.get("steps") != steps:
                measured += f" (card measured at step {res.get('steps')})"
        if notes is not None:
            eye = notes.get("summary", "see card")
            if notes.get("step") != steps:
                eye += f" (seen at step {notes.get('step')})"
        rows.append(
            f"| `{name}` | {INDEX_DATA[name]} | {steps if steps is not None else '–'} | {measured} "
            f"| {eye} | [{name}]({name}.md) |"
        )
    return "\n".join([_INDEX_HEAD, *rows, "", _INDEX_FOOT])


def ladder_order() -> list[str]:
    """The ladder's model names rung by rung (each rung's seeds together): the table's order."""
    return [ladder_name(r, s) for r in ladder.RUNGS for s in LADDER_SEEDS]


def ladder_markdown(cards_dir: Path | str = CARDS_DIR, weights_dir: Path | str = WEIGHTS_DIR) -> str:
    """The ladder's appendix page: one row per rung and seed, from the model folders
    (``weights_dir/ladder/<name>/zoo.json``) and the compact cards
    (``cards_dir/ladder/<name>/card.json``)."""
    cards_dir, weights_dir = Path(cards_dir), Path(weights_dir)
    rec = LADDER_RECIPE
    lines = [
        "# Appendix: the dataset-complexity ladder",
        "",
        f"{len(ladder.RUNGS)} rungs of one disk renderer with a growing number of free factors "
        f"(`pullback_utils.zoo.ladder`), {len(LADDER_SEEDS)} training seeds per rung, one recipe for all: "
        f"{rec['steps']} steps at batch {rec['batch_size']}, lr {rec['lr']} ({rec['warmup']}-step warm-up, "
        f"cosine-annealed from step {rec['decay_from']} to {rec['lr_final']} at step {rec['steps']}), "
        f"{rec['n_train']} training "
        f"images, U-Net block_out_channels {tuple(rec['channels'])}. Train the missing ones with "
        f"`{CLI} ladder --workers 2` (resumable); write a card with `{CLI} card NAME`.",
        "",
        "A sample is a **clean** disk image when every disk of its rung is visible and the foreground "
        "IoU with the fitted rendering is at least 0.9 (rung 5: the union of both disks); the data "
        "column is the fitter's score on fresh data. Memorisation: the share of samples nearer the "
        "training set than 95 % of fresh data (5 % expected).",
        "",
        "| rung | factors | seed | steps | clean (samples) | clean (data) | median IoU | memorisation | card |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ladder_order():
        r, s = MODELS[name]["rung"], MODELS[name]["seed"]
        factors = f"{ladder.n_factors(r)} ({ladder.RUNG_NAMES[r]})"
        steps = _steps(weights_dir / LADDER_DIR / name)
        card = cards_dir / LADDER_CARDS / name / "card.json"
        res = read_json(card) if card.is_file() else None
        if steps is None:
            cells = ["not trained", "–", "–", "–", "–", "–"]
        elif res is None:
            cells = [str(steps), "no card yet", "–", "–", "–", "–"]
        else:
            fi, mem = res["fidelity"], res["memorisation"]
            at = "" if res.get("steps") == steps else f" (card at step {res.get('steps')})"
            cells = [
                f"{steps}{at}",
                f"{100 * fi['samples_clean']:.1f} %",
                f"{100 * fi['data_clean']:.1f} %",
                f"{fi['samples_median_iou']:.3f}",
                f"{100 * mem['share_samples_closer_than_fresh_p05']:.1f} %",
                f"[card]({LADDER_CARDS}/{name}.md)",
            ]
        lines.append(f"| {r} | {factors} | {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""])
