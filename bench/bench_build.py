"""Benchmark: catalogue build time and nodules/s on a data set, fresh and over unchanged data.

Run: ``.venv/bin/python -m bench.bench_build --data data/synth --model models/demo``.
Writes ``bench/results/build_synthetic.json`` with the machine and the date.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

from bench.common import cpu_model, now_utc, write_results
from indexer.cli import main as nodule_index
from model.store.layout import IndexLayout

logger = logging.getLogger("bench_build")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=Path("bench/results/build_synthetic.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for label in ("fresh", "unchanged data (vectors reused)"):
            started = time.perf_counter()
            command = [
                "build",
                "--data",
                str(args.data),
                "--model",
                str(args.model),
                "--index",
                tmp,
            ]
            code = nodule_index([*command, "--no-progress", "--workers", str(args.workers)])
            wall = time.perf_counter() - started
            if code != 0:
                return code
            layout = IndexLayout(Path(tmp))
            manifest = layout.manifest(str(layout.current()))
            runs.append(
                {
                    "run": label,
                    "wall_s": wall,
                    "nodules": manifest.n_nodules,
                    "embedded": manifest.n_embedded,
                    "nodules_per_s": manifest.n_nodules / wall,
                    "timings_s": manifest.timings_s,
                }
            )
            logger.info("%s", runs[-1])
    record = {
        "benchmark": "nodule-index build (exact index), wall time including model load",
        "date": now_utc(),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "workers": args.workers},
        "data": str(args.data),
        "runs": runs,
    }
    write_results(args.out, record)
    logger.info("-> %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
