"""Benchmark: 8 clients against ``nodule-api`` while the catalogue is rebuilt and reloaded.

A catalogue is built into a temporary folder from ``--data`` with ``--model``; ``nodule-api``
serves it on loopback. Eight client threads then send coordinate searches, ``/similar``,
``/v1/index`` and ``/v1/scans`` pages in a loop, while the main thread runs ``nodule-index build
--keep 1`` and, 5 s later, ``POST /v1/admin/reload``, ``--rebuilds`` times: each build prunes
down to one version, so only the lease keeps the served one on disk. Recorded: requests and
errors by status, p50/p99 latency, and version consistency (every answer names one published
version, and no client ever sees an older version after a newer one). Results with the machine
and the date go to ``bench/results/load_during_rebuilds.json``.

Run: ``.venv/bin/python -m bench.bench_load --data data/synth --model models/demo``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.bench_service import _free_port
from bench.common import cpu_model, now_utc, write_results
from model.store.catalog import Catalog
from model.store.layout import IndexLayout
from model.store.tables import Nodule

logger = logging.getLogger("bench_load")
ADMIN_KEY = "bench-load-admin"


@dataclass
class ClientLog:
    """What one client saw."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    versions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _call(url: str, method: str, body: dict[str, object] | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json"} if data else {}
    if url.endswith("/reload"):
        headers["x-api-key"] = ADMIN_KEY
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _client(
    url: str, nodules: list[tuple[int, str, list[float]]], stop: threading.Event, seed: int
) -> ClientLog:
    log = ClientLog()
    rng = np.random.default_rng(seed)
    while not stop.is_set():
        nodule_id, series_uid, center = nodules[int(rng.integers(len(nodules)))]
        kind = int(rng.integers(4))
        request: tuple[str, str, dict[str, object] | None]
        if kind == 0:
            body: dict[str, object] = {"series_uid": series_uid, "center_xyz": center, "k": 5}
            request = (f"{url}/v1/search/coordinate", "POST", body)
        elif kind == 1:
            request = (f"{url}/v1/nodules/{nodule_id}/similar?k=5", "GET", None)
        elif kind == 2:
            request = (f"{url}/v1/index", "GET", None)
        else:  # a query the row cache cannot answer: SQL on the served version every time
            request = (f"{url}/v1/scans?limit=5&offset={int(rng.integers(30))}", "GET", None)
        t0 = time.perf_counter()
        status, content = _call(*request)
        log.latencies_ms.append((time.perf_counter() - t0) * 1000.0)
        log.statuses[status] += 1
        if status != 200:
            log.errors.append(f"{status} {request[1]} {content[:200]!r}")
            continue
        answer = json.loads(content)
        if kind == 2:
            log.versions.append(answer["version"])
        elif kind < 2:
            log.versions.append(answer["query"]["index_version"])
    return log


def _build(data: Path, model: Path, index: Path, keep: int) -> None:
    command = [
        sys.executable,
        "-c",
        "import sys; from indexer.cli import main; raise SystemExit(main(sys.argv[1:]))",
        "build",
        "--data",
        str(data),
        "--model",
        str(model),
        "--index",
        str(index),
        "--keep",
        str(keep),
        "--no-progress",
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _serve(index: Path, data: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NODULE_INDEX_DIR": str(index),
        "NODULE_DATA_DIR": str(data),
        "NODULE_DEVICE": "cpu",
        "NODULE_API_KEY": ADMIN_KEY,
        "NODULE_LOG_LEVEL": "warning",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                return server
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("nodule-api did not start") from None
            time.sleep(0.3)


def _monotonic(versions: list[str]) -> bool:
    # Version names sort in build order.
    return all(a <= b for a, b in itertools.pairwise(versions))


def main() -> int:
    """Build, serve, load with clients during rebuilds and reloads, write the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rebuilds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/load_during_rebuilds.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        index = Path(tmp) / "index"
        _build(args.data, args.model, index, keep=1)
        catalog = Catalog.open(index)
        with catalog.sessions() as session:
            nodules = [
                (n.id, n.series_uid, list(n.center_xyz))
                for n in session.query(Nodule).order_by(Nodule.id)
            ]
        catalog.close()
        port = _free_port()
        server = _serve(index, args.data, port)
        url = f"http://127.0.0.1:{port}"
        published = [IndexLayout(index).current() or ""]
        stop = threading.Event()
        logs: list[ClientLog] = []
        threads = [
            threading.Thread(
                target=lambda s=seed: logs.append(_client(url, nodules, stop, s)), daemon=True
            )
            for seed in range(args.clients)
        ]
        reloads: list[int] = []
        t0 = time.perf_counter()
        try:
            for thread in threads:
                thread.start()
            time.sleep(2.0)
            for _ in range(args.rebuilds):
                _build(args.data, args.model, index, keep=1)
                published.append(IndexLayout(index).current() or "")
                # Searches go on against the served version, now neither current nor among the
                # --keep 1 newest: only its lease keeps it on disk.
                time.sleep(5.0)
                reloads.append(_call(f"{url}/v1/admin/reload", "POST")[0])
                time.sleep(2.0)
            stop.set()
            for thread in threads:
                thread.join(timeout=120)
        finally:
            stop.set()
            server.terminate()
            server.wait(timeout=30)
        duration = time.perf_counter() - t0
    latencies = [ms for log in logs for ms in log.latencies_ms]
    statuses: Counter[int] = Counter()
    for log in logs:
        statuses.update(log.statuses)
    seen = {v for log in logs for v in log.versions}
    record = {
        "benchmark": f"{args.clients} clients during {args.rebuilds} rebuilds (--keep 1) + reloads",
        "date": now_utc(),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "catalogue": {"data": str(args.data), "nodules": len(nodules)},
        "duration_s": duration,
        "requests": len(latencies),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": sum(v for k, v in statuses.items() if k != 200),
        "error_examples": [e for log in logs for e in log.errors][:5],
        "latency_ms": {
            "p50": float(np.percentile(latencies, 50)),
            "p99": float(np.percentile(latencies, 99)),
            "max": float(np.max(latencies)),
        },
        "reload_statuses": reloads,
        "versions_published": len(published),
        "versions_seen": len(seen),
        "versions_consistent": seen <= set(published)
        and all(_monotonic(log.versions) for log in logs),
    }
    write_results(args.out, record)
    logger.info("%s", json.dumps(record, indent=1))
    ok = record["errors"] == 0 and record["versions_consistent"] and set(reloads) == {200}
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
