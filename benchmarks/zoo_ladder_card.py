"""Time one ladder model's compact card at the card's defaults on one CPU thread.

The card's budget is under two minutes on one thread (``pullback_utils.zoo.cards``:
``LADDER_SAMPLES`` samples, ``LADDER_DDIM_STEPS`` DDIM steps). Without trained ladder weights the
model is the ladder's U-Net after one training step (the cost of a card does not depend on the
weights), written to a temporary folder; ``--model-path`` times a trained folder instead.
Prints the wall time of each part and of the whole card. Run on a quiet machine.

    python benchmarks/zoo_ladder_card.py                 # rung 5 (two disks: the slowest fit)
    python benchmarks/zoo_ladder_card.py --name ladder-1-s0
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default="ladder-5-s0")
    p.add_argument("--model-path", default=None)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    from pullback_utils.zoo import cards
    from pullback_utils.zoo.registry import LADDER_RECIPE
    from pullback_utils.zoo.train import train

    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(a.model_path) if a.model_path else Path(tmp) / "weights" / "ladder" / a.name
        if a.model_path is None:
            t = time.time()
            train(
                a.name,
                1,
                batch_size=LADDER_RECIPE["batch_size"],
                n_train=LADDER_RECIPE["n_train"],
                channels=LADDER_RECIPE["channels"],
                out_dir=path,
                cache_dir=None,
                progress=False,
                threads=a.threads,
            )
            print(f"model folder (1 training step, incl. {LADDER_RECIPE['n_train']} images): {time.time() - t:.1f} s")
        t = time.time()
        res = cards.write_card(a.name, model_path=path, out_dir=Path(tmp) / "cards", threads=a.threads, progress=False)
        print(
            f"{a.name}: card with {res['n_samples']} samples, {res['ddim_steps']} DDIM steps, "
            f"{a.threads} thread(s): {time.time() - t:.1f} s (card_wall_s {res['card_wall_s']})"
        )


if __name__ == "__main__":
    main()
