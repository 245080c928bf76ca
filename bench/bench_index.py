"""Benchmark: exact vs HNSW vs IVF FAISS indexes on random unit vectors.

For each catalogue size: build time, single-query search latency on one thread (p50, p99) and
recall@10 against exact search, for a sweep of the search-time knob (efSearch, nprobe). Random
Gaussian vectors are the hard case for approximate search (no cluster structure to exploit), so
real embeddings do at least as well. Results, with the machine and the date, go to
``bench/results/index_types.json``.

Run: ``.venv/bin/python -m bench.bench_index [--sizes 10000 100000 1000000] [--dim 128]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from bench.common import cpu_model, now_utc, write_results
from model.store.vector_index import (
    INDEX_TYPES,
    build_index,
    default_params,
    set_search_params,
)

logger = logging.getLogger("bench_index")

KNOBS = {"hnsw": ("efSearch", [32, 64, 128, 256, 512]), "ivf": ("nprobe", [8, 16, 32, 64, 128])}


def unit(
    rng: np.random.Generator, n: int, dim: int, centers: np.ndarray | None = None
) -> np.ndarray:
    """Unit vectors: isotropic Gaussian, or around ``centres`` (clustered, like real embeddings)."""
    x = rng.standard_normal((n, dim), dtype=np.float32)
    if centers is not None:
        x = centers[rng.integers(len(centers), size=n)] + 0.35 * x / np.sqrt(dim)
    return np.asarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


def latencies_ms(index: Any, queries: np.ndarray, k: int) -> tuple[float, float, np.ndarray]:
    faiss.omp_set_num_threads(1)
    times, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        _, ids = index.search(q[None, :], k)
        times.append((time.perf_counter() - t0) * 1000.0)
        found.append(ids[0])
    return float(np.percentile(times, 50)), float(np.percentile(times, 99)), np.asarray(found)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument(
        "--clustered",
        action="store_true",
        help="vectors around 1,000 random centres instead of isotropic (closer to embeddings)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/index_types.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rng = np.random.default_rng(0)
    results: list[dict[str, Any]] = []
    for n in args.sizes:
        centers = unit(rng, 1000, args.dim) if args.clustered else None
        base = unit(rng, n, args.dim, centers)
        queries = unit(rng, args.queries, args.dim, centers)
        ids = np.arange(n, dtype=np.int64)
        for index_type in INDEX_TYPES:
            faiss.omp_set_num_threads(os.cpu_count() or 1)
            params = default_params(index_type, n)
            t0 = time.perf_counter()
            index = build_index(base, ids, index_type, params)
            build_s = time.perf_counter() - t0
            if index_type == "exact":
                p50, p99, truth = latencies_ms(index, queries, 10)
                row = {
                    "n": n,
                    "type": "exact",
                    "build_s": build_s,
                    "p50_ms": p50,
                    "p99_ms": p99,
                    "recall_at_10": 1.0,
                }
                results.append(row)
                logger.info("%s", row)
                continue
            knob, values = KNOBS[index_type]
            for value in values:
                set_search_params(index, {knob: value})
                p50, p99, found = latencies_ms(index, queries, 10)
                row = {
                    "n": n,
                    "type": index_type,
                    "build_s": build_s,
                    "params": {**params, knob: value},
                    "p50_ms": p50,
                    "p99_ms": p99,
                    "recall_at_10": recall(found, truth),
                }
                results.append(row)
                logger.info("%s", row)
    record = {
        "benchmark": f"FAISS exact/HNSW/IVF, {'clustered' if args.clustered else 'isotropic'} "
        f"random unit {args.dim}-d vectors, 1 search thread",
        "date": now_utc(),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "faiss": faiss.__version__},
        "goal": "at 1e6: recall@10 >= 0.95 with p99 <= 1 ms on one thread",
        "results": results,
    }
    write_results(args.out, record)
    logger.info("-> %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
