"""Benchmark: coordinate-query latency in-process, over HTTP, and by the whole-volume baseline.

In-process: ``Retriever.search_coordinate`` (region read, patch, embed, search, rows). HTTP:
``nodule-api`` under uvicorn on loopback, ``POST /v1/search/coordinate`` at concurrency 1 and
8 (bounded: a fixed number of requests). Baseline: the usual path — read the whole volume,
resample all of it to the model's spacing, crop, embed, search. Results with the machine and the
date go to ``bench/results/service_latency.json``.

Run: ``.venv/bin/python -m bench.bench_service --index index/demo --data data/synth``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from app.retrieval import PointOptions
from app.schemas import Filters
from app.settings import AppSettings
from app.state import load_served
from bench.common import cpu_model, now_utc, whole_volume_patch, write_results
from model.store.tables import Nodule

logger = logging.getLogger("bench_service")


def _percentiles(ms: list[float]) -> dict[str, float]:
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "n": len(ms),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def baseline_ms(retriever: object, mhd: Path, center: tuple[float, float, float]) -> float:
    """Whole read + whole resample to the model spacing + crop + embed + search."""
    from app.retrieval import Retriever

    assert isinstance(retriever, Retriever)
    t0 = time.perf_counter()
    patch = whole_volume_patch(mhd, center, retriever.embedder.card.preprocessing)
    vector = retriever.embedder.embed_patches(patch[None].astype(np.float32))[0]
    retriever.neighbors(vector, 5, Filters())
    return (time.perf_counter() - t0) * 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("bench/results/service_latency.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = AppSettings(index_dir=args.index, data_dir=args.data, device="cpu")
    retriever = load_served(settings).retriever
    with retriever.catalog.sessions() as session:
        nodules = [(n.series_uid, n.center_xyz) for n in session.query(Nodule).order_by(Nodule.id)]
    queries = [nodules[i % len(nodules)] for i in range(args.queries)]
    retriever.search_coordinate(*queries[0], PointOptions(5, Filters()))  # warm-up
    in_process = []
    for uid, center in queries:
        t0 = time.perf_counter()
        retriever.search_coordinate(uid, center, PointOptions(5, Filters()))
        in_process.append((time.perf_counter() - t0) * 1000.0)
    mhd = {p.stem: p for p in args.data.glob("subset*/*.mhd")}
    base = [baseline_ms(retriever, mhd[uid], center) for uid, center in queries[:10]]
    port = _free_port()
    env = {
        **os.environ,
        "NODULE_INDEX_DIR": str(args.index),
        "NODULE_DATA_DIR": str(args.data),
        "NODULE_DEVICE": "cpu",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    http: dict[str, dict[str, float]] = {}
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/readyz", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

        def one(query: tuple[str, tuple[float, float, float]]) -> float:
            body = json.dumps(
                {"series_uid": query[0], "center_xyz": list(query[1]), "k": 5}
            ).encode()
            request = urllib.request.Request(
                f"{url}/v1/search/coordinate",
                data=body,
                headers={"content-type": "application/json"},
            )
            t0 = time.perf_counter()
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
            return (time.perf_counter() - t0) * 1000.0

        one(queries[0])
        for concurrency in (1, 8):
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                http[f"concurrency_{concurrency}"] = _percentiles(list(pool.map(one, queries)))
    finally:
        server.terminate()
        server.wait(timeout=30)
    record = {
        "benchmark": "POST /v1/search/coordinate on a catalogue (k=5)",
        "date": now_utc(),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "catalogue": {"index": str(args.index), "nodules": len(nodules)},
        "in_process": _percentiles(in_process),
        "http": http,
        "baseline_whole_volume": _percentiles(base),
        "speedup_vs_baseline_p50": statistics.median(base) / statistics.median(in_process),
        "goals": "p50 <= 20 ms in-process; HTTP p50 <= 1.3x in-process; >= 50x the baseline",
    }
    write_results(args.out, record)
    logger.info(
        "%s",
        json.dumps(
            {
                k: record[k]
                for k in ("in_process", "http", "baseline_whole_volume", "speedup_vs_baseline_p50")
            },
            indent=1,
        ),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
