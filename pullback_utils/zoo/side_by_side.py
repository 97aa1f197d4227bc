"""Train several zoo models side by side in one process: the fast path on a GPU.

``python -m pullback_utils.zoo train-many NAME [NAME ...] --device cuda --max-minutes 10`` trains each
model in a thread of its own, all on one device, with :func:`pullback_utils.zoo.train.train` — the
same function, weights, checkpoints and records as the one-model CPU path, so a model trained here and
one trained by ``zoo train`` with the same arguments are bitwise equal on the CPU (the tests check it)
and interchangeable everywhere. Small models leave a GPU mostly idle one at a time; a handful at once
fill it (each thread launches its own kernels while the others wait on theirs). Resumable like
``zoo train`` (each model's checkpoint in ``<cache-dir>/<name>/``); ``--max-minutes`` bounds the wall
time of the whole run, and SIGTERM / Ctrl-C stop every model cleanly after its current step (each
saves). A model whose folder already holds the target steps is skipped.

The recipe is one set of :func:`~pullback_utils.zoo.train.train` keyword arguments for all models (e.g.
:data:`~pullback_utils.zoo.registry.LADDER_RECIPE`, or the command line's options).
"""

from __future__ import annotations

import signal
import threading
import time
import traceback
from pathlib import Path

from pullback_utils.zoo.parallel import steps_done
from pullback_utils.zoo.paths import DEFAULT_CACHE
from pullback_utils.zoo.registry import check_model_name, default_folder

__all__ = ["train_side_by_side"]


def train_side_by_side(
    names: list[str],
    recipe: dict,
    *,
    device: str = "cpu",
    threads: int = 1,
    max_minutes: float | None = None,
    cache_dir: Path | str | None = DEFAULT_CACHE,
    out_dirs: dict[str, Path | str] | None = None,
    progress: bool = True,
) -> dict[str, dict]:
    """Train ``names`` at once, one thread each, with :func:`~pullback_utils.zoo.train.train`.

    Args:
        names: zoo models (distinct).
        recipe: keyword arguments of ``train`` shared by all models; ``steps`` is required.
        device, threads: as for ``train`` (``threads``: torch CPU threads of the process).
        max_minutes: wall-time bound of the whole run (every model stops cleanly at it).
        cache_dir: checkpoints folder (one subfolder per model).
        out_dirs: model folders by name (default: the bundled folders).

    Returns:
        ``{name: {"status": "trained" | "skipped" | "failed", "step": int, "error": str}}``; a model that
        fails does not stop the others.
    """
    from pullback_utils.zoo.train import train

    if not isinstance(names, (list, tuple)) or not names:
        raise ValueError(f"names: expected a non-empty list of zoo models, got {names!r}")
    for n in names:
        check_model_name(n)
    if len(set(names)) != len(names):
        raise ValueError(f"names: each model once, got {list(names)}")
    if "steps" not in recipe:
        raise ValueError("recipe: needs 'steps' (the total step count to reach)")
    bad = {"device", "threads", "max_minutes", "out_dir", "cache_dir", "stop_event", "progress"} & set(recipe)
    if bad:
        raise ValueError(f"recipe: {sorted(bad)} are arguments of train_side_by_side, not of the recipe")
    if max_minutes is not None and not (isinstance(max_minutes, (int, float)) and max_minutes > 0):
        raise ValueError(f"max_minutes: a number > 0 (or None), got {max_minutes!r}")
    out_dirs = {n: Path(out_dirs[n]) if out_dirs and n in out_dirs else default_folder(n) for n in names}
    results: dict[str, dict] = {}
    todo = []
    for n in names:
        done = steps_done(n, out_dirs[n])
        if done >= recipe["steps"]:
            results[n] = {"status": "skipped", "step": done, "error": ""}
        else:
            todo.append(n)
    stop = threading.Event()

    def run(name: str) -> None:
        try:
            res = train(
                name,
                **recipe,
                device=device,
                threads=threads,
                out_dir=out_dirs[name],
                cache_dir=cache_dir,
                stop_event=stop,
                progress=progress,
            )
            results[name] = {"status": "trained", "step": res.step, "error": ""}
        except Exception as e:  # noqa: BLE001 - reported per model, the others go on
            results[name] = {
                "status": "failed",
                "step": steps_done(name, out_dirs[name]),
                "error": f"{type(e).__name__}: {e}",
            }
            traceback.print_exc()

    workers = [threading.Thread(target=run, args=(n,), name=f"train-{n}", daemon=True) for n in todo]
    main = threading.current_thread() is threading.main_thread()
    old = (
        {s: signal.signal(s, lambda signum, frame: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)} if main else {}
    )
    t0 = time.time()
    try:
        for w in workers:
            w.start()
        while any(w.is_alive() for w in workers):
            if max_minutes is not None and time.time() - t0 > 60 * max_minutes:
                stop.set()
            for w in workers:
                w.join(timeout=0.5)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return results
