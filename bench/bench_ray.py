"""Benchmark: catalogue build throughput, local processes vs Ray, on the same synthetic set.

Both executors at 2 workers (local: 2 processes; Ray: a local cluster of 2 CPUs, crop tasks and
one embed actor). Reports wall time, scans/s and nodules/s of each build, Ray's fixed start-up
cost (``ray.init`` of a local cluster), and the peak resident memory of the whole process tree
(driver, workers, Ray's daemons), sampled every 0.1 s. Results with the machine and the date go
to ``bench/results/build_executors.json``.

Run: ``.venv/bin/python -m bench.bench_ray --data data/synth --model models/demo``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import cpu_model, now_utc, write_results
from indexer.cli import main as nodule_index
from model.store.layout import IndexLayout

logger = logging.getLogger("bench_ray")


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and its descendants, from /proc (Linux)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    total = 0
    for pid in tree:
        try:
            resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        total += resident_pages * PAGE_BYTES
    return total


PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak summed RSS of this process and all its descendants while active."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss(os.getpid()))
            time.sleep(0.1)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _build(data: Path, model: Path, index: Path, *extra: str) -> dict[str, Any]:
    args = ["build", "--data", str(data), "--model", str(model), "--index", str(index)]
    with PeakMemory() as memory:
        t0 = time.perf_counter()
        code = nodule_index([*args, "--no-progress", "--workers", "2", "--device", "cpu", *extra])
        seconds = time.perf_counter() - t0
    if code != 0:
        raise RuntimeError(f"build {extra} failed with exit code {code}")
    layout = IndexLayout(index)
    manifest = layout.manifest(layout.current() or "")
    scans, nodules = manifest.n_scans, manifest.n_nodules
    return {
        "seconds": seconds,
        "scans": scans,
        "nodules": nodules,
        "scans_per_s": scans / seconds,
        "nodules_per_s": nodules / seconds,
        "peak_rss_mb": memory.peak / 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/synth"))
    parser.add_argument("--model", type=Path, default=Path("models/demo"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/build_executors.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import ray

    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        local = _build(args.data, args.model, work / "local")
        t0 = time.perf_counter()
        ray.init(num_cpus=2, logging_level="WARNING", log_to_driver=False)
        startup = time.perf_counter() - t0
        try:
            on_ray = _build(args.data, args.model, work / "ray", "--executor", "ray")
        finally:
            ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    record = {
        "benchmark": "catalogue build: local processes vs Ray Data (2 workers each)",
        "date": now_utc(),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "data": str(args.data),
        "local": local,
        "ray": on_ray,
        "ray_startup_s": startup,
    }
    write_results(args.out, record)
    logger.info(
        "local %.1f s (%.1f scans/s, peak %.0f MB); ray %.1f s (%.1f scans/s, peak %.0f MB) + "
        "%.1f s to start a local cluster",
        local["seconds"],
        local["scans_per_s"],
        local["peak_rss_mb"],
        on_ray["seconds"],
        on_ray["scans_per_s"],
        on_ray["peak_rss_mb"],
        startup,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
