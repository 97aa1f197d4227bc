"""The zoo's command line: ``python -m pullback_utils.zoo COMMAND ...``.

Commands:

- ``train NAME [--steps N] [--device cpu|cuda] ...``: train (or continue training) one model, then
  write its card (``--no-card``: don't); see :func:`pullback_utils.zoo.train.train`;
- ``card NAME [--n-samples N] [--ddim-steps S] ...``: measure a model and write its card
  (``--markdown-only``: rewrite the text from the stored numbers); see
  :func:`pullback_utils.zoo.cards.write_card`;
- ``train-many NAME [NAME ...] [--device cuda] [--max-minutes M]``: several models side by side in one
  process, one thread each (the fast path on a GPU); see
  :func:`pullback_utils.zoo.side_by_side.train_side_by_side`;
- ``ladder [NAME ...] [--workers 2]``: train the ladder's models (default: all of them) with the
  shared recipe, several side by side, resumably; see :func:`pullback_utils.zoo.parallel.train_many`;
- ``index``: rewrite the appendix's index pages (``index.md``, ``ladder.md``) from the stored cards.

``python -m pullback_utils.zoo.train ...``, ``python -m pullback_utils.zoo.cards ...`` and
``python -m pullback_utils.zoo.parallel ...`` are aliases of ``train``, ``card`` and ``ladder``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pullback_utils.zoo.paths import CARDS_DIR, DEFAULT_CACHE
from pullback_utils.zoo.registry import LADDER_MODELS, LADDER_RECIPE, WEIGHTS_DIR, ZOO_MODELS, check_model_name

__all__ = ["main", "parse_channels"]


def parse_channels(text: str) -> tuple[int, int, int]:
    """``"64,128,128"`` -> (64, 128, 128); ``SystemExit`` naming ``--channels`` otherwise."""
    from pullback_utils.zoo.unet import check_channels

    try:
        return check_channels(tuple(int(c) for c in text.split(",")))
    except ValueError:
        raise SystemExit(
            f"--channels: expected three comma-separated multiples of 8 such as 64,128,128, got {text!r}"
        ) from None


def _model_name(text: str) -> str:
    try:
        check_model_name(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train or continue training one model, then write its card",
        description="Train (or continue training) a zoo model; seeded and resumable.",
    )
    p.add_argument("name", type=_model_name, help="zoo model: " + ", ".join(ZOO_MODELS) + " or ladder-<rung>-s<seed>")
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
    p.add_argument(
        "--decay-from", type=int, default=None, help="anneal the learning rate (cosine) from this step to --steps"
    )
    p.add_argument("--lr-final", type=float, default=None, help="learning rate reached at --steps")
    p.add_argument(
        "--channels",
        default=None,
        help="U-Net block_out_channels, comma-separated (default 32,64,64; e.g. 64,128,128 "
        "for a larger model on a GPU, with a new --out-dir)",
    )
    p.add_argument("--tiny", action="store_true", help="tiny U-Net and data (smoke tests)")
    p.add_argument("--no-card", action="store_true", help="do not (re)write the model card")
    p.add_argument("--warmup", type=int, default=200, help="learning-rate warm-up steps")
    p.add_argument(
        "--loss-weighting",
        choices=["none", "min-snr"],
        default="none",
        help="weighting of the v-prediction loss over t (min-snr: min(SNR, gamma) / (SNR + 1))",
    )
    p.add_argument("--snr-gamma", type=float, default=5.0, help="gamma of --loss-weighting min-snr")


def _run_train(a: argparse.Namespace) -> int:
    from pullback_utils.zoo.train import train

    res = train(
        a.name,
        a.steps,
        batch_size=a.batch_size,
        lr=a.lr,
        device=a.device,
        seed=a.seed,
        threads=a.threads,
        max_minutes=a.max_minutes,
        out_dir=a.out_dir,
        cache_dir=a.cache_dir,
        tiny=a.tiny,
        n_train=a.n_train,
        save_every=a.save_every,
        decay_from=a.decay_from,
        lr_final=a.lr_final,
        warmup=a.warmup,
        channels=parse_channels(a.channels) if a.channels else None,
        loss_weighting=a.loss_weighting,
        snr_gamma=a.snr_gamma,
    )
    print(f"{a.name}: step {res.step}, loss {res.loss:.4f}, {res.s_per_step:.3f} s/step")
    if not a.no_card:
        from pullback_utils.zoo.cards import write_card

        write_card(a.name, model_path=res.out_dir, device=a.device, threads=a.threads)
    return 0


def _add_train_many(sub) -> None:
    p = sub.add_parser(
        "train-many",
        help="train several models side by side in one process (a GPU's fast path)",
        description="Train several zoo models at once, one thread each, on one device, with the "
        "same trainer, weights and records as `train`; resumable, --max-minutes "
        "bounds the whole run.",
    )
    p.add_argument("names", nargs="+", type=_model_name, help="zoo models (e.g. disks-s1 disks-s2 shapes-text-s1)")
    p.add_argument(
        "--ladder-recipe",
        action="store_true",
        help="use the ladder's shared recipe (the options below then must not be given)",
    )
    p.add_argument("--steps", type=int, default=None, help="total steps to reach (default 15000)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--decay-from", type=int, default=None)
    p.add_argument("--lr-final", type=float, default=None)
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--channels", default=None)
    p.add_argument("--loss-weighting", choices=["none", "min-snr"], default=None)
    p.add_argument("--snr-gamma", type=float, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads of the process")
    p.add_argument("--max-minutes", type=float, default=None, help="wall-time bound of the whole run")
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE))


def _run_train_many(a: argparse.Namespace) -> int:
    from pullback_utils.zoo.side_by_side import train_side_by_side

    given = {
        k: getattr(a, k)
        for k in (
            "steps",
            "batch_size",
            "lr",
            "warmup",
            "decay_from",
            "lr_final",
            "n_train",
            "channels",
            "loss_weighting",
            "snr_gamma",
        )
        if getattr(a, k) is not None
    }
    if a.ladder_recipe and given:
        raise ValueError(f"--ladder-recipe fixes the recipe; drop {sorted('--' + k.replace('_', '-') for k in given)}")
    recipe = dict(LADDER_RECIPE) if a.ladder_recipe else {"steps": 15000, **given}
    if isinstance(recipe.get("channels"), str):
        recipe["channels"] = parse_channels(recipe["channels"])
    res = train_side_by_side(
        list(a.names), recipe, device=a.device, threads=a.threads, max_minutes=a.max_minutes, cache_dir=a.cache_dir
    )
    for name, r in res.items():
        print(f"{name}: {r['status']} at step {r['step']}" + (f" ({r['error']})" if r["error"] else ""))
    return 0 if all(r["status"] != "failed" for r in res.values()) else 1


def _add_card(sub) -> None:
    p = sub.add_parser(
        "card",
        help="measure a model and write its card",
        description="Write the model card of a zoo model (ladder models: a compact card).",
    )
    p.add_argument("name", type=_model_name, help="zoo model: " + ", ".join(ZOO_MODELS) + " or ladder-<rung>-s<seed>")
    p.add_argument("--model-path", default=None, help="model folder (default: the bundled one)")
    p.add_argument("--out-dir", default=None, help=f"cards folder (default {CARDS_DIR})")
    p.add_argument(
        "--n-samples",
        type=int,
        default=None,
        help="default 256 (disks, shapes, shapes-text), 128 (others and ladder models)",
    )
    p.add_argument("--ddim-steps", type=int, default=None, help="default 50 (ladder models: 20)")
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--markdown-only",
        action="store_true",
        help="rewrite the markdown from the stored card.json without measuring again",
    )


def _run_card(a: argparse.Namespace) -> int:
    from pullback_utils.zoo.cards import rewrite_markdown, write_card

    if a.markdown_only:
        rewrite_markdown(a.name, a.model_path, a.out_dir)
        return 0
    res = write_card(a.name, a.model_path, a.out_dir, a.n_samples, a.ddim_steps, a.guidance, a.device, a.threads)
    print(json.dumps({k: v for k, v in res.items() if k != "example_prompts"}, indent=1))
    return 0


def _add_ladder(sub) -> None:
    p = sub.add_parser(
        "ladder",
        help="train the ladder's models side by side (shared recipe)",
        description="Train ladder models with the shared recipe, at most --workers at a "
        "time, one torch thread each, resumably.",
    )
    p.add_argument("names", nargs="*", type=_model_name, help="ladder models (default: all of them)")
    p.add_argument("--workers", type=int, default=2, help="models trained at once (one thread each)")
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    p.add_argument("--max-minutes", type=float, default=None, help="per model and run")


def _run_ladder(a: argparse.Namespace) -> int:
    from pullback_utils.zoo.parallel import train_many

    names = a.names or list(LADDER_MODELS)
    codes = train_many(
        names, dict(LADDER_RECIPE), workers=a.workers, cache_dir=Path(a.cache_dir), max_minutes=a.max_minutes
    )
    return 0 if all(c == 0 for c in codes.values()) else 1


def _add_index(sub) -> None:
    p = sub.add_parser("index", help="rewrite index.md and ladder.md from the stored cards")
    p.add_argument("--out-dir", default=str(CARDS_DIR), help="cards folder")
    p.add_argument("--weights-dir", default=str(WEIGHTS_DIR), help="bundled weights folder")


def _run_index(a: argparse.Namespace) -> int:
    from pullback_utils.zoo.cards import write_indexes

    write_indexes(a.out_dir, a.weights_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one command (``argv`` without the program name); returns the exit status."""
    p = argparse.ArgumentParser(
        prog="python -m pullback_utils.zoo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_train_many, _add_card, _add_ladder, _add_index):
        add(sub)
    a = p.parse_args(argv)
    if a.command == "ladder" and any(n not in LADDER_MODELS for n in a.names):
        p.error(
            f"ladder: {[n for n in a.names if n not in LADDER_MODELS]} are not ladder models "
            f"(train them with `train NAME`)"
        )
    run = {
        "train": _run_train,
        "train-many": _run_train_many,
        "card": _run_card,
        "ladder": _run_ladder,
        "index": _run_index,
    }[a.command]
    try:
        return run(a)
    except ValueError as e:  # bad input found after parsing: one line, no traceback
        p.exit(2, f"{p.prog} {a.command}: error: {e}\n")


if __name__ == "__main__":
    sys.exit(main())
