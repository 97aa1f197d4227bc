"""Time the book: each chapter run by the runner, a second (skipped) run, and the Jupyter Book build.

    python benchmarks/book_build.py [--quick] [--only NAME ...]

Works on a temporary copy of the book sources (the notebooks are read from notebooks/), so the
repository's book/generated and _build are left alone. Prints one line per chapter and the totals.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the tiny parameters of book/params/quick.yaml")
    parser.add_argument("--only", nargs="+", metavar="NAME")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="book-bench-") as tmp:
        root = Path(tmp)
        shutil.copy(REPO / "_config.yml", root / "_config.yml")
        shutil.copytree(REPO / "book", root / "book", ignore=shutil.ignore_patterns("generated", "_build"))
        layout = Layout(root, notebooks_dir=REPO / "notebooks")

        started = time.perf_counter()
        results = run(layout, only=args.only, quick=args.quick, progress=False)
        first = time.perf_counter() - started
        started = time.perf_counter()
        again = run(layout, only=args.only, quick=args.quick, progress=False)
        second = time.perf_counter() - started
        started = time.perf_counter()
        status = build(layout, ["-q"])
        built = time.perf_counter() - started

    print(f"\ncores: {os.cpu_count()}, mode: {'quick' if args.quick else 'defaults'}")
    for r in results:
        print(f"  {r.name:<22} {r.status:<7} {r.seconds:7.1f} s  {r.message[:80]}")
    print(f"run: {first:.1f} s; rerun (skips: {sum(r.status == 'skipped' for r in again)}/{len(again)}): {second:.1f} s; "
          f"jupyter-book build: {built:.1f} s (exit {status})")


if __name__ == "__main__":
    main()
