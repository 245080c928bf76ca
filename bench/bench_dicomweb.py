"""Benchmark: a coordinate query's patch through a PACS (DICOMweb) vs the same from files.

Starts a local Orthanc with its DICOMweb plugin (as the tests do), stores the real LIDC-IDRI-0001
series by STOW-RS, then measures the patch + embedding at its LUNA16 nodule:

* cold: a new connection, so series metadata and the needed frames are fetched;
* warm: metadata cached, only frames are fetched (repeated queries in one study);
* files: the same series as a DICOM folder on local disk (region read), opened per query (all
  headers parsed) and opened once (as the service keeps it).

Also the bytes fetched for one patch against the bytes of the whole series. Results with the
machine and the date go to ``bench/results/dicomweb_latency.json``.

Run: ``.venv/bin/python -m bench.bench_dicomweb [--model models/demo]``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import statistics
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests

from bench.common import cpu_model, now_utc, write_results
from model.ct.dicom import DicomSeriesSource
from model.ct.dicomweb import DicomwebSeriesSource, Pacs
from model.ct.pacs import PacsConfig
from model.nn.embedder import Embedder
from model.preprocessing import extract_patch
from tests.helpers.orthanc import Orthanc

logger = logging.getLogger("bench_dicomweb")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TARBALL = "LIDC-IDRI-0001_series179049373636438705059720603192_133slices_dicom+xml.tar.xz"


def _counting_pacs(orthanc: Orthanc) -> tuple[Pacs, list[int]]:
    pacs = Pacs(PacsConfig(url=orthanc.url, user=orthanc.user, password=orthanc.password))
    received: list[int] = []

    def count(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        received.append(len(response.content))

    pacs.session.hooks["response"].append(count)
    return pacs, received


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("models/demo"))
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("bench/results/dicomweb_latency.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    embedder = Embedder.from_model_dir(args.model, "cpu")
    spec = embedder.card.preprocessing
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with tarfile.open(SHARED / "lidc_dicom" / TARBALL, "r:xz") as tar:
            tar.extractall(work / "ct", filter="data")
        folder = next(p.parent for p in (work / "ct").rglob("*.dcm"))
        (work / "pacs").mkdir()
        orthanc = Orthanc(work / "pacs")
        orthanc.start()
        try:
            study, series = orthanc.store(folder)
            with (SHARED / "luna16" / "annotations.csv").open() as f:
                row = next(r for r in csv.DictReader(f) if r["seriesuid"] == series)
            center = (float(row["coordX"]), float(row["coordY"]), float(row["coordZ"]))

            def query(source: Any) -> None:
                patch = extract_patch(source, center, spec)
                embedder.embed_patches(patch[None])

            cold, cold_bytes, cold_requests = [], [], []
            for _ in range(args.queries):
                pacs, received = _counting_pacs(orthanc)
                t0 = time.perf_counter()
                query(DicomwebSeriesSource(pacs, study, series))
                cold.append((time.perf_counter() - t0) * 1000)
                cold_bytes.append(sum(received))
                cold_requests.append(pacs.requests)
            pacs, received = _counting_pacs(orthanc)
            query(DicomwebSeriesSource(pacs, study, series))
            warm = []
            received.clear()
            before = pacs.requests
            for _ in range(args.queries):
                t0 = time.perf_counter()
                query(DicomwebSeriesSource(pacs, study, series))
                warm.append((time.perf_counter() - t0) * 1000)
            warm_bytes = sum(received) / args.queries
            warm_requests = (pacs.requests - before) / args.queries
            files = []
            for _ in range(args.queries):
                t0 = time.perf_counter()
                query(DicomSeriesSource(folder))
                files.append((time.perf_counter() - t0) * 1000)
            opened = DicomSeriesSource(folder)  # as the service keeps it (OpenSources)
            files_warm = []
            for _ in range(args.queries):
                t0 = time.perf_counter()
                query(opened)
                files_warm.append((time.perf_counter() - t0) * 1000)
            series_bytes = sum(p.stat().st_size for p in folder.glob("*.dcm"))
        finally:
            orthanc.stop()

    def p50(values: list[float]) -> float:
        return float(statistics.median(values))

    record = {
        "benchmark": "patch + embedding at a LUNA16 nodule of LIDC-IDRI-0001: PACS vs files",
        "date": now_utc(),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "pacs": "Orthanc 1.10 + DICOMweb plugin 1.7 on loopback",
        "series": {"slices": 133, "bytes_on_disk": series_bytes},
        "cold_ms": {"p50": p50(cold), "p90": float(np.percentile(cold, 90))},
        "cold_requests": int(statistics.median(cold_requests)),
        "cold_bytes": int(statistics.median(cold_bytes)),
        "warm_ms": {"p50": p50(warm), "p90": float(np.percentile(warm, 90))},
        "warm_requests": warm_requests,
        "warm_bytes": warm_bytes,
        "files_ms": {"p50": p50(files), "p90": float(np.percentile(files, 90))},
        "files_opened_ms": {"p50": p50(files_warm), "p90": float(np.percentile(files_warm, 90))},
        "fraction_of_series_fetched_warm": warm_bytes / series_bytes,
    }
    write_results(args.out, record)
    logger.info(
        "cold p50 %.1f ms (%d requests, %.1f MB), warm p50 %.1f ms (%.0f frames, %.1f MB), "
        "files p50 %.1f ms (%.1f ms with the folder already opened); series %.1f MB",
        record["cold_ms"]["p50"],
        record["cold_requests"],
        record["cold_bytes"] / 1e6,
        record["warm_ms"]["p50"],
        warm_requests,
        warm_bytes / 1e6,
        record["files_ms"]["p50"],
        record["files_opened_ms"]["p50"],
        series_bytes / 1e6,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
