"""Time the book: each chapter run by the runner, a second (skipped) run, and the Jupyter Book build.

    python benchmarks/book_build.py [--quick] [--only NAME ...] [--jobs N] [--cluster local:N]
    python benchmarks/book_build.py --quick --jobs 1 2      # the speed-up of running chapters in parallel

Works on a temporary copy of the book sources (the notebooks are read from notebooks/), so the
repository's book/generated and _build are left alone, and with an empty basis cache of its own for
every run (so a second run computes what the first did). Prints one line per chapter, the totals, and
for several ``--jobs`` the speed-up over the first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from pullback_utils.book import Layout, build, run

REPO = Path(__file__).resolve().parents[1]


def one_run(args: argparse.Namespace, jobs: int) -> dict:
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="book-bench-") as tmp:
        root = Path(tmp)
        shutil.copy(REPO / "_config.yml", root / "_config.yml")
        shutil.copytree(REPO / "book", root / "book", ignore=shutil.ignore_patterns("generated", "_build"))
        layout = Layout(root, notebooks_dir=REPO / "notebooks")
        overrides = {"cache_dir": str(root / "bases")}  # empty: nothing is reused from an earlier run
        started = time.perf_counter()
        results = run(
            layout,
            only=args.only,
            quick=args.quick,
            progress=False,
            overrides=overrides,
            jobs=jobs,
            cluster=args.cluster,
        )
        first = time.perf_counter() - started
        started = time.perf_counter()
        again = run(
            layout,
            only=args.only,
            quick=args.quick,
            progress=False,
            overrides=overrides,
            jobs=jobs,
            cluster=args.cluster,
        )
        second = time.perf_counter() - started
        built, status = float("nan"), None
        if not args.no_build:
            started = time.perf_counter()
            status = build(layout, ["-q"])
            built = time.perf_counter() - started
    print(
        f"\njobs {jobs}, cluster {args.cluster!r}, cores: {os.cpu_count()}, load average before: {load}, "
        f"mode: {'quick' if args.quick else 'defaults'}"
    )
    for r in results:
        print(f"  {r.name:<22} {r.status:<7} {r.seconds:7.1f} s  {r.message[:80]}")
    print(
        f"run: {first:.1f} s; rerun (skips: {sum(r.status == 'skipped' for r in again)}/{len(again)}): {second:.1f} s; "
        f"jupyter-book build: {built:.1f} s (exit {status})",
        flush=True,
    )
    return {"jobs": jobs, "run": first, "failed": [r.name for r in results if r.status == "failed"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the tiny parameters of book/params/quick.yaml")
    parser.add_argument("--only", nargs="+", metavar="NAME")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1], help="chapters at once (several: one run each)")
    parser.add_argument("--cluster", default=None, help="the chapters' cluster parameter (e.g. local:2)")
    parser.add_argument("--no-build", action="store_true", help="skip the jupyter-book build")
    args = parser.parse_args()
    runs = [one_run(args, jobs) for jobs in args.jobs]
    if len(runs) > 1:
        print(
            "\nrun wall time: "
            + ", ".join(f"jobs {r['jobs']}: {r['run']:.1f} s" for r in runs)
            + "; speed-up "
            + ", ".join(f"{runs[0]['run'] / r['run']:.2f}x (jobs {r['jobs']})" for r in runs[1:])
        )


if __name__ == "__main__":
    main()
