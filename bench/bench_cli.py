"""Benchmark: how fast ``nodule-index`` answers ``--help`` and wrong arguments (whole processes).

Times, as separate processes from start to exit, ``nodule-index --help``, ``nodule-index build
--help``, a usage error (``build`` without its required options) and a wrong path (``evaluate
--index`` of a folder that does not exist), each the median of ``--repeats`` runs after one
warm-up. For comparison it also times a process that imports every command's implementation,
which is what ``nodule-index --help`` did before its parser was built from light modules.

Run: ``.venv/bin/python -m bench.bench_cli [--repeats 7] [--out bench/results/cli_help.json]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import cpu_model, now_utc, write_results
from indexer.cli import RUNNERS

logger = logging.getLogger("bench_cli")

#: What the process is asked, and the exit code it must answer with.
CALLS: dict[str, tuple[list[str], int]] = {
    "help": (["--help"], 0),
    "build_help": (["build", "--help"], 0),
    "usage_error": (["build"], 2),
    "wrong_path": (["evaluate", "--index", "/nonexistent/index", "--out", "/tmp/report"], 2),
}


def nodule_index() -> list[str]:
    """The installed console script beside this Python, else ``python -m indexer``."""
    script = shutil.which("nodule-index", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "indexer"]


def timed_process(command: list[str], expected_code: int, repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` runs of ``command`` (after one warm-up run)."""
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - t0
        if done.returncode != expected_code:
            raise RuntimeError(f"{command} exited {done.returncode}: {done.stderr[-500:]}")
        if i:  # the first run warms the page cache
            times.append(elapsed)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each call")
    parser.add_argument("--out", type=Path, default=Path("bench/results/cli_help.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    program = nodule_index()
    results: dict[str, dict[str, object]] = {}
    for name, (argv, code) in CALLS.items():
        runs = timed_process([*program, *argv], code, args.repeats)
        results[name] = {"argv": argv, "median_s": statistics.median(runs), "runs_s": runs}
        logger.info("nodule-index %s: median %.3f s", " ".join(argv), statistics.median(runs))
    modules = sorted({where.partition(":")[0] for where in RUNNERS.values()})
    eager = [sys.executable, "-c", "; ".join(f"import {m}" for m in modules)]
    runs = timed_process(eager, 0, max(3, args.repeats // 2))
    results["import_every_command"] = {
        "modules": modules,
        "median_s": statistics.median(runs),
        "runs_s": runs,
    }
    logger.info("import of every command's module: median %.3f s", statistics.median(runs))
    record = {
        "benchmark": "nodule-index --help, build --help, a usage error and a wrong path, as "
        "whole processes (start to exit)",
        "date": now_utc(),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "program": " ".join(Path(p).name for p in program),
        "repeats": args.repeats,
        "goal_s": 1.0,
        "calls": results,
        "notes": "import_every_command is what every call cost before the parser was built "
        "from light modules (cli.py imported all of them); the machine is shared, so runs vary",
    }
    write_results(args.out, record)
    logger.info("-> %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
