"""Rehearse ``book/params/paper.yaml`` on full-size random-weight replicas of its hub pipelines, on this machine.

The paper's file, unchanged, names google/ddpm-ema-celebahq-256 and stabilityai/stable-diffusion-2-1-base. This
script writes random-weight replicas of both (:mod:`pullback_utils.zoo.replicas`; skipped when the folders exist),
points the hub ids at them with the model map (``$PULLBACK_MODEL_MAP``), and runs every chapter of the file with
``python -m pullback_utils.book chapter NAME --params book/params/paper.yaml -p ...`` at reduced counts
(:data:`REDUCED`: 2 samples (4 where a chapter's tests need 4), 2-3 timesteps, k = 2-3, 4 DDIM steps, tol 0.1, at
most 2 iterations, edits of a few guidance and DDIM steps) and full resolution (3x256x256 pixels; 4x64x64 latents
of 512x512 images). One chapter at a time, each in its own process tree, with an empty basis cache. It writes a
table: chapter, model, wall seconds, Jacobian products (J·v + Jᵀu of the sweeps the chapter records in
``metrics.json``), peak resident memory of the chapter's processes (GNU time's maximum RSS, i.e. the kernel's),
ok/failed. What it rehearses is the path (loading, shapes, memory, every cell), not the results: the weights are
random.

    nice -n 5 python benchmarks/paper_rehearsal.py --replicas /tmp/replicas --out /tmp/rehearsal \\
        --table benchmarks/results-paper_rehearsal.txt [--only coarse_to_fine editing]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "book" / "params" / "paper.yaml"
CELEBA = "google/ddpm-ema-celebahq-256"
SD = "stabilityai/stable-diffusion-2-1-base"
_FEW = dict(k=2, tol=0.1, max_iters=2, ddim_steps=4)
#: the counts each chapter runs at (everything else, models included, is paper.yaml's)
REDUCED: dict[str, dict] = {
    "local_basis_tutorial": dict(
        k=3, ddim_steps=4, tol=0.1, methods=["krylov", "power"], power_max_iters=2, reference_tol=0.1
    ),
    # one Krylov block per basis; 2 guidance steps per edit (the CelebA-HQ default, 16, made each of the 20
    # matched-size edits ~210 s at 256 x 256 here: ~70 min)
    "coarse_to_fine": dict(
        _FEW,
        max_iters=1,
        edit_settings={"n_steps": 2},
        n_samples=2,
        times=[0.7, 0.3],
        control_times=[0.7, 0.3],
        edit_times=[0.7, 0.3],
        gaussian_images=300,
        gaussian_rank=128,
        share_k=32,
        sensitivity_tol=0.2,
        sensitivity_samples=2,
    ),
    "timestep_discrepancy": dict(
        _FEW,
        max_iters=1,
        n_samples=4,
        times=[0.7, 0.5, 0.3],
        control_times=[0.7, 0.3],
        ablation_times=[0.7, 0.3],
        anchor_time=0.5,
        lags=[0.25],
        gaussian_images=300,
        gaussian_rank=128,
        sensitivity_tol=0.2,
        sensitivity_samples=4,  # its jackknife test over sample pairs needs 4 (2 failed here after 8 min, now refused)
    ),
    "dataset_complexity": dict(
        _FEW,
        rungs=[1, 2],
        seeds=[0, 1],
        n_samples=4,
        times=[0.7, 0.3],
        control_times=[0.7],
        control_samples=2,
        illustration=["disks"],
        n_twonn=200,
        gaussian_images=300,
        gaussian_rank=128,
    ),
    # 4 of the paper's 12 prompts (the chapter's minimum; 2 states and 2 control states, the minimum of each):
    # bases = (prompts + 1) x (n_states + n_control) x times
    # one Krylov block per basis (8 products at k = 2): an SD-2.1 product is ~7 s on this CPU
    "prompt_influence": dict(
        _FEW,
        max_iters=1,
        n_states=2,
        n_control=2,
        times=[1.0, 0.1],
        prompts=[
            "a dog sitting on a wooden bench in a park",
            "a dog running on the beach",
            "a cat sleeping on a sofa",
            "a red bus driving down a city street",
        ],
    ),
    # the per-model EditConfig (100 inversion and sampling steps, N = 16-64) cut to tens of U-Net passes
    "editing": dict(
        n_samples=2,
        edit_times=[0.7, 0.4],
        k=2,
        tol=0.1,
        max_iters=1,
        edit_settings={"inversion_steps": 10, "sampling_steps": 10, "n_steps": 2, "n_steps_prompt": 2},
    ),
    "ground_truth": dict(_FEW, models=["disks", "shapes"], n_samples=2, times=[0.7, 0.3], n_pool=300, n_neighbours=10),
}


def write_replicas(folder: Path) -> dict[str, str]:
    """{hub id: replica folder}, writing the replicas that are not there yet."""
    from pullback_utils.zoo.replicas import write_replica

    out = {}
    for hub_id, name in ((CELEBA, "celebahq"), (SD, "sd21")):
        where = folder / name
        if not (where / "model_index.json").is_file():
            print(f"writing the replica of {hub_id} into {where}", flush=True)
            write_replica(hub_id, where)
        out[hub_id] = str(where.resolve())
    return out


def products(metrics: dict) -> int | None:
    """J·v + Jᵀu products recorded anywhere in a chapter's metrics (``n_jvp_total``/``n_vjp_total``,
    ``n_jvp``/``n_vjp``)."""
    total, found = 0, False

    def walk(o):
        nonlocal total, found
        if isinstance(o, dict):
            for key, v in o.items():
                if key in ("n_jvp_total", "n_vjp_total", "n_jvp", "n_vjp") and isinstance(v, (int, float)):
                    total += int(v)
                    found = True
                else:
                    walk(v)

    walk(metrics)
    return total if found else None


def models_of(group: dict, reduced: dict | None = None) -> str:
    group = {**group, **(reduced or {})}
    names = [group[k] for k in ("model", "text_model") if k in group] + list(group.get("models", []))
    if "rungs" in group:
        names.append(f"ladder rungs {group['rungs']} x seeds {group.get('seeds')}")
    short = {CELEBA: "celebahq-256 replica", SD: "sd-2.1-base replica"}
    return ", ".join(short.get(n, n) for n in names) or "(chapter default)"


def run_chapter(name: str, out: Path, env: dict[str, str], timeout: float, threads: int = 1) -> dict:
    """Run one chapter of paper.yaml at :data:`REDUCED` counts with ``threads`` torch threads; its row of the
    table."""
    args = [
        sys.executable,
        "-m",
        "pullback_utils.book",
        "chapter",
        name,
        "--params",
        str(PAPER),
        "-o",
        str(out / name),
        "--force",
        "-q",
        "-p",
        "cache_dir",
        "''",
    ]
    for key, value in {**REDUCED.get(name, {}), "threads": threads}.items():
        args += ["-p", key, json.dumps(value)]
    timing = out / f"{name}.time"
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", str(timing), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        status, tail = ("ok" if proc.returncode == 0 else "failed"), (proc.stdout + proc.stderr)[-2000:]
    except subprocess.TimeoutExpired as exc:
        status, tail = "timed out", str(exc)[-500:]
    seconds = time.perf_counter() - start
    peak = None
    if timing.is_file():
        lines = [ln for ln in timing.read_text().split() if ln.isdigit()]
        peak = int(lines[-1]) * 1024 if lines else None
    metrics = out / name / "metrics.json"
    n = products(json.loads(metrics.read_text())) if metrics.is_file() and status == "ok" else None
    (out / f"{name}.log").write_text(tail)
    return dict(chapter=name, seconds=seconds, products=n, peak_bytes=peak, status=status, tail=tail)


def table(rows: list[dict], groups: dict) -> str:
    lines = ["| chapter | model | wall s | products | peak GB | result |", "|---|---|---|---|---|---|"]
    for r in rows:
        peak = f"{r['peak_bytes'] / 1e9:.2f}" if r["peak_bytes"] else "?"
        prods = str(r["products"]) if r["products"] is not None else "-"
        lines.append(
            f"| {r['chapter']} | {models_of(groups.get(r['chapter'], {}), REDUCED.get(r['chapter']))} "
            f"| {r['seconds']:.0f} | {prods} "
            f"| {peak} | {r['status']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replicas", type=Path, default=Path("/tmp/pullback-replicas"))
    p.add_argument("--out", type=Path, default=Path("/tmp/pullback-rehearsal"))
    p.add_argument(
        "--only",
        nargs="+",
        metavar="CHAPTER",
        help="run these chapters, in this order; the rows of "
        "chapters run earlier into the same --out are kept in the table",
    )
    p.add_argument("--table", type=Path, help="also write the table (and the command) to this file")
    p.add_argument("--timeout", type=float, default=7200.0, help="seconds per chapter")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads per chapter (the chapters' `threads` and OMP_NUM_THREADS; 1 on a shared machine)",
    )
    p.add_argument(
        "--table-only", action="store_true", help="write the table of the rows already in --out, run nothing"
    )
    args = p.parse_args(argv)
    groups = yaml.safe_load(PAPER.read_text())
    if args.table_only:
        rows = json.loads((args.out / "rows.json").read_text()) if (args.out / "rows.json").is_file() else []
        return _write_table(rows, groups, args, argv)
    names = list(args.only) if args.only else [n for n in groups if n != "all"]
    unknown = [n for n in names if n not in groups or n == "all"]
    if unknown:
        p.error(f"--only: not a chapter of {PAPER.name}: {', '.join(unknown)}")
    mapping = write_replicas(args.replicas)
    from pullback_utils.zoo.loading import MODEL_MAP_ENV, format_model_map

    if args.threads < 1:
        p.error(f"--threads must be a positive integer, got {args.threads}")
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        OMP_NUM_THREADS=str(args.threads),
        **{MODEL_MAP_ENV: format_model_map(mapping)},
    )
    args.out.mkdir(parents=True, exist_ok=True)
    earlier = args.out / "rows.json"
    rows = [r for r in (json.loads(earlier.read_text()) if earlier.is_file() else []) if r["chapter"] not in names]
    order = [n for n in groups if n != "all"]
    for name in names:
        print(f"run  {name} ...", flush=True)
        row = run_chapter(name, args.out, env, args.timeout, args.threads)
        rows.append(row)
        rows.sort(key=lambda r: order.index(r["chapter"]))
        print(
            f"{row['status']:6s} {name} in {row['seconds']:.0f} s, products {row['products']}, peak "
            f"{(row['peak_bytes'] or 0) / 1e9:.2f} GB",
            flush=True,
        )
        if row["status"] != "ok":
            print(row["tail"], flush=True)
        (args.out / "rows.json").write_text(json.dumps(rows, indent=1))
    return _write_table(rows, groups, args, argv)


def _write_table(rows: list[dict], groups: dict, args: argparse.Namespace, argv: list[str] | None) -> int:
    text = table(rows, groups)
    print(text)
    if args.table:
        header = (
            f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: python benchmarks/paper_rehearsal.py "
            f"{' '.join(argv if argv is not None else sys.argv[1:])}\n# counts per chapter: REDUCED in the "
            f"script; everything else from book/params/paper.yaml\n\n"
        )
        args.table.write_text(header + text + "\n")
    return 0 if rows and all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
