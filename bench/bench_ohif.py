"""What the OHIF server costs (issue 30): its proxies beside direct calls, OHIF's first image.

On this machine: Orthanc with LIDC-IDRI-0001 (133 slices, 512 x 512), a live nodule-api on a
catalogue, a live nodule-ohif serving the pinned bundle. Measured, each as p50/p90 over N tries:

- one WADO-RS frame (uncompressed, what the service fetches) and the series' WADO-RS metadata,
  from Orthanc directly and through ``/dicom-web``;
- a coordinate search of the nodule (``study_uid``: read from the PACS), from the API directly
  and through ``/v1``;
- OHIF in Chromium, each time in a fresh browser context (nothing cached): from the page request
  to the first image of the study shown, the panel's module loaded;
- the resident memory of the nodule-ohif process after all of that.

``python -m bench.bench_ohif [--index index/demo]``; needs ``make ohif`` and ../shared/data.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import requests
from playwright.sync_api import sync_playwright

from app.ohif import bundle
from bench.common import cpu_model, now_utc, write_results
from indexer.data.realset import REAL_SCANS, extract_scan
from tests.helpers.live_server import (
    OHIF_RETURNING_USER,
    chromium_path,
    free_port,
    live_api,
    live_process,
)
from tests.helpers.orthanc import Orthanc

logger = logging.getLogger("bench_ohif")
SHARED = Path(os.environ.get("NODULE_SHARED_DATA", "../shared/data"))
FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


def _timed(call: Callable[[], Any], n: int) -> dict[str, float]:
    call()  # connections opened, caches warm: what a reading radiologist sees
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    return {"p50": float(statistics.median(times)), "p90": float(np.percentile(times, 90))}


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _first_image_s(ohif: str, study: str, tries: int) -> list[float]:
    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"]
        )
        for _ in range(tries):
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.add_init_script(OHIF_RETURNING_USER)
            page = context.new_page()
            t0 = time.perf_counter()
            page.goto(f"{ohif}/viewer?StudyInstanceUIDs={study}")
            shown = (
                "import('/nodule-search/panel/extension.js').then(m => m.inspect.shownInstance())"
            )
            while not page.evaluate(shown):
                page.wait_for_timeout(50)
            times.append(time.perf_counter() - t0)
            context.close()
        browser.close()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", type=Path, default=Path("index/demo"))
    parser.add_argument("--tries", type=int, default=30)
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/ohif.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("dicomweb_client").setLevel(logging.WARNING)
    dist = bundle.fetch(Path("build/ohif"))
    scan = next(s for s in REAL_SCANS if s.key == "LIDC-IDRI-0001")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = extract_scan(SHARED, scan, work / "ct")
        (work / "pacs").mkdir()
        pacs = Orthanc(work / "pacs")
        pacs.start()
        try:
            study, series = pacs.store(folder)
            record = _measure(args, dist, pacs, folder, study, series, work)
        finally:
            pacs.stop()
    write_results(args.out, record)
    logger.info("%s", record)
    return 0


def _measure(
    args: argparse.Namespace,
    dist: Path,
    pacs: Orthanc,
    folder: Path,
    study: str,
    series: str,
    work: Path,
) -> dict[str, Any]:
    with (SHARED / "luna16" / "annotations.csv").open() as f:
        row = next(r for r in csv.DictReader(f) if r["seriesuid"] == series)
    center = [float(row[k]) for k in ("coordX", "coordY", "coordZ")]
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.glob("*.dcm"))]
    middle = str(sorted(headers, key=lambda h: float(h.ImagePositionPatient[2]))[66].SOPInstanceUID)
    pacs_env = {
        "NODULE_DICOMWEB_URL": pacs.url,
        "NODULE_DICOMWEB_USER": pacs.user,
        "NODULE_DICOMWEB_PASSWORD": pacs.password,
        "NODULE_DEVICE": "cpu",
    }
    api_env = {**pacs_env, "NODULE_INDEX_DIR": str(args.index)}
    with live_api(api_env, work / "api.log") as api:
        port = free_port()
        ohif = f"http://127.0.0.1:{port}"
        env = {**pacs_env, "NODULE_OHIF_DIST": str(dist), "NODULE_OHIF_API_URL": api}
        command = [sys.executable, "-m", "app.ohif", "serve", "--port", str(port)]
        with live_process(command, env, work / "ohif.log", f"{ohif}/app-config.js", "ohif") as pid:
            direct = requests.Session()
            direct.auth = (pacs.user, pacs.password)
            proxied = requests.Session()
            path = f"studies/{study}/series/{series}"
            frame = f"{path}/instances/{middle}/frames/1"

            def fetch(session: requests.Session, base: str, what: str, accept: str) -> None:
                answer = session.get(f"{base}/{what}", headers={"Accept": accept}, timeout=60)
                answer.raise_for_status()

            body: dict[str, Any] = {
                "series_uid": series,
                "study_uid": study,
                "center_xyz": center,
                "k": 5,
            }

            def search(base: str) -> None:
                proxied.post(
                    f"{base}/v1/search/coordinate", json=body, timeout=60
                ).raise_for_status()

            n = args.tries
            record: dict[str, Any] = {
                "benchmark": "the OHIF server: its proxies beside direct calls, OHIF's first image",
                "date": now_utc(),
                "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
                "ohif": bundle.OHIF.version,
                "catalogue": str(args.index),
                "frame_ms": {
                    "direct": _timed(lambda: fetch(direct, pacs.url, frame, FRAME_ACCEPT), n),
                    "proxied": _timed(
                        lambda: fetch(proxied, f"{ohif}/dicom-web", frame, FRAME_ACCEPT), n
                    ),
                },
                "series_metadata_ms": {
                    "direct": _timed(
                        lambda: fetch(
                            direct, pacs.url, f"{path}/metadata", "application/dicom+json"
                        ),
                        n,
                    ),
                    "proxied": _timed(
                        lambda: fetch(
                            proxied,
                            f"{ohif}/dicom-web",
                            f"{path}/metadata",
                            "application/dicom+json",
                        ),
                        n,
                    ),
                },
                "search_ms": {
                    "direct": _timed(lambda: search(api), n),
                    "proxied": _timed(lambda: search(ohif), n),
                },
            }
            loads = _first_image_s(ohif, study, args.loads)
            record["ohif_first_image_s"] = {
                "each": [round(t, 2) for t in loads],
                "p50": float(statistics.median(loads)),
            }
            record["ohif_server_rss_mb"] = round(_rss_mb(pid), 1)
    return record


if __name__ == "__main__":
    raise SystemExit(main())
