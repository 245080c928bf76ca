"""The server's memory on SR uploads whose headers carry bulk (issue 27 item 3).

``nodule-api`` runs on loopback; the bench sends ``POST /v1/reports/sr/upload`` zips of the
synthetic DICOM series whose every slice carries a large UC text and an OB nested in a sequence
(``--payload-mb`` of header bulk in all), after a plain SR upload, and reads the server
process's resident memory from ``/proc`` (VmRSS before, VmHWM: the peak). The payload must stay
in the parser process: what the server decodes is bounded by ``model.ct.dicom.evidence_header``
and ``app.uploads.parse.MAX_HEADERS_JSON_CHARS``.

    python -m bench.bench_report_memory --index index/demo --data data/synth

Writes ``bench/results/report_upload_memory.json`` with the machine and the date.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from bench.common import cpu_model, now_utc, write_results
from model.ct.dicom import DicomSeriesSource

logger = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak so far) of a process, kB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def _payload_zip(folder: Path, payload_mb: float) -> bytes:
    """The series with bulk in every slice's header groups, zipped as stored (random bytes do not
    deflate; a zip that inflates far is refused as a bomb before it is parsed)."""
    files = sorted(folder.iterdir())
    per_slice = int(payload_mb * 1e6 / len(files) / 2)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path in files:
            ds = pydicom.dcmread(path)
            ds.add_new(0x00080119, "UC", "x" * per_slice)  # Long Code Value
            item = Dataset()
            item.add_new(0x00091010, "OB", os.urandom(per_slice))
            ds.add_new(0x00081140, "SQ", [item])
            out = io.BytesIO()
            ds.save_as(out)
            archive.writestr(path.name, out.getvalue())
    return buffer.getvalue()


def _post(url: str, archive: bytes, center: str) -> tuple[int, float]:
    boundary = uuid.uuid4().hex
    body = b"".join(
        [
            f'--{boundary}\r\nContent-Disposition: form-data; name="center_xyz"\r\n\r\n'
            f"{center}\r\n".encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            'filename="series.zip"\r\nContent-Type: application/zip\r\n\r\n'.encode(),
            archive,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    request = urllib.request.Request(
        f"{url}/v1/reports/sr/upload",
        data=body,
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as e:
        status = e.code
    return status, time.perf_counter() - started


def _serve(index: Path, data: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NODULE_INDEX_DIR": str(index),
        "NODULE_DATA_DIR": str(data),
        "NODULE_DEVICE": "cpu",
        "NODULE_MAX_UPLOAD_MB": "64",
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
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2)
            return server
        except OSError:
            if time.monotonic() > deadline:
                server.terminate()
                raise
            time.sleep(0.5)


def measure(index: Path, data: Path, payload_mb: float, repeats: int) -> dict[str, Any]:
    """Peak RSS of the server over plain and bulky SR uploads."""
    folder = next((data / "dicom").iterdir())
    source = DicomSeriesSource(folder)
    middle = [n / 2 for n in source.geometry.shape_zyx]
    center = ",".join(f"{v:.2f}" for v in source.geometry.index_zyx_to_world(middle))
    plain = _payload_zip(folder, 0.001)
    bulky = _payload_zip(folder, payload_mb)
    port = _free_port()
    server = _serve(index, data, port)
    url = f"http://127.0.0.1:{port}"
    try:
        first = _post(url, plain, center)  # warm: the model and the catalogue are loaded
        before = _memory_kb(server.pid)
        bulky_runs = [_post(url, bulky, center) for _ in range(repeats)]
        after = _memory_kb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "zip_mb": round(len(bulky) / 1e6, 1),
        "plain_status": first[0],
        "bulky_statuses": [s for s, _ in bulky_runs],
        "bulky_seconds": [round(t, 2) for _, t in bulky_runs],
        "server_rss_mb_before": round(before["VmRSS"] / 1024, 1),
        "server_peak_rss_mb_before": round(before["VmHWM"] / 1024, 1),
        "server_rss_mb_after": round(after["VmRSS"] / 1024, 1),
        "server_peak_rss_mb_after": round(after["VmHWM"] / 1024, 1),
        "peak_growth_mb": round((after["VmHWM"] - before["VmHWM"]) / 1024, 1),
    }


def main() -> int:
    """Run the bench and write its results file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--payload-mb", type=float, default=16.0, help="header bulk in all (MB)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/report_upload_memory.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = measure(args.index, args.data, args.payload_mb, args.repeats)
    record = {
        "benchmark": "server memory on POST /v1/reports/sr/upload with bulky headers",
        "date": now_utc(),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "catalogue": str(args.index),
        "payload_mb": args.payload_mb,
        "result": result,
        "bound": "peak growth under 300 MB (issue 27)",
    }
    write_results(args.out, record)
    logger.info("%s", json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
