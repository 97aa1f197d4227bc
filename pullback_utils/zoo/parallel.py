"""Train several zoo models side by side, one process and one torch thread each, resumably.

``python -m pullback_utils.zoo ladder --workers 2`` trains every ladder model with the
shared :data:`~pullback_utils.zoo.registry.LADDER_RECIPE`, at most ``--workers`` at a time, in the
catalogue's seed-major order (each rung's first seed first, so an interrupted run leaves whole
replicates). Each model runs ``python -m pullback_utils.zoo train NAME ...`` in its own process, logging to
``<cache-dir>/<name>/train.log``; a model whose folder already holds the target steps is skipped, and a
stopped one resumes from its checkpoint. SIGTERM / Ctrl-C stop every worker cleanly (each saves).
``python -m pullback_utils.zoo.parallel [--ladder] [NAME ...]`` is an alias of the ``ladder`` command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pullback_utils._validate import check_int, check_real
from pullback_utils.zoo.paths import DEFAULT_CACHE
from pullback_utils.zoo.registry import check_model_name, default_folder, read_info


def steps_done(name: str, out_dir: Path | None = None) -> int:
    """Steps recorded in the model folder's ``zoo.json`` (0 when there is none)."""
    folder = out_dir or default_folder(name)
    if not (folder / "zoo.json").is_file():
        return 0
    try:
        return int(read_info(folder).get("steps", 0))
    except ValueError:
        return 0


def _train_command(
    name: str, recipe: dict, *, cache_dir: Path, threads: int = 1, max_minutes: float | None = None
) -> list[str]:
    """The ``python -m pullback_utils.zoo train`` command line of one model under ``recipe``."""
    cmd = [
        sys.executable,
        "-m",
        "pullback_utils.zoo",
        "train",
        name,
        "--no-card",
        "--threads",
        str(threads),
        "--cache-dir",
        str(cache_dir),
        "--steps",
        str(recipe["steps"]),
        "--batch-size",
        str(recipe["batch_size"]),
        "--lr",
        str(recipe["lr"]),
        "--warmup",
        str(recipe["warmup"]),
        "--n-train",
        str(recipe["n_train"]),
        "--channels",
        ",".join(map(str, recipe["channels"])),
    ]
    if recipe.get("loss_weighting", "none") != "none":
        cmd += ["--loss-weighting", recipe["loss_weighting"], "--snr-gamma", str(recipe.get("snr_gamma", 5.0))]
    if recipe.get("decay_from") is not None:
        cmd += ["--decay-from", str(recipe["decay_from"]), "--lr-final", str(recipe["lr_final"])]
    if max_minutes is not None:
        cmd += ["--max-minutes", str(max_minutes)]
    return cmd


def train_many(
    names: list[str],
    recipe: dict,
    *,
    workers: int = 2,
    cache_dir: Path = DEFAULT_CACHE,
    max_minutes: float | None = None,
    poll_s: float = 5.0,
) -> dict[str, int]:
    """Train ``names`` under ``recipe`` with at most ``workers`` processes at once.

    Returns ``{name: return code}`` of the models that ran (models already at the target are left
    out). A failed model does not stop the others; its log says why.
    """
    for n in names:
        check_model_name(n)
    check_int(workers, "workers:", 1)
    if max_minutes is not None:
        check_real(max_minutes, "max_minutes:", positive=True)
    todo = [n for n in names if steps_done(n) < recipe["steps"]]
    running: dict[str, tuple[subprocess.Popen, object]] = {}
    codes: dict[str, int] = {}
    stop = {"flag": False}

    def _stop(signum, frame):
        stop["flag"] = True
        for proc, _ in running.values():
            proc.send_signal(signal.SIGTERM)

    old = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while (todo and not stop["flag"]) or running:
            while todo and len(running) < workers and not stop["flag"]:
                name = todo.pop(0)
                log_path = Path(cache_dir) / name / "train.log"
                log_path.parent.mkdir(parents=True, exist_ok=True)
                log = open(log_path, "a")
                log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} start (target {recipe['steps']} steps)\n")
                log.flush()
                env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TQDM_MININTERVAL="60")
                proc = subprocess.Popen(
                    _train_command(name, recipe, cache_dir=Path(cache_dir), max_minutes=max_minutes),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
                running[name] = (proc, log)
                print(f"[{time.strftime('%H:%M:%S')}] started {name} (pid {proc.pid})", flush=True)
            time.sleep(poll_s)
            for name in [n for n, (p, _) in running.items() if p.poll() is not None]:
                proc, log = running.pop(name)
                log.close()
                codes[name] = proc.returncode
                print(
                    f"[{time.strftime('%H:%M:%S')}] {name} finished with code {proc.returncode} "
                    f"at step {steps_done(name)}",
                    flush=True,
                )
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return codes


if __name__ == "__main__":  # alias of `python -m pullback_utils.zoo ladder ...`
    import runpy

    sys.argv[1:] = ["ladder"] + [arg for arg in sys.argv[1:] if arg != "--ladder"]
    runpy.run_module("pullback_utils.zoo", run_name="__main__", alter_sys=True)
