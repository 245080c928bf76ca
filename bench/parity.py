"""Refactor parity: what a layout change must not change, fingerprinted.

``python -m bench.parity record --data D --model M --out DIR`` builds a fresh catalogue from a
trained model, evaluates it, asks the service for searches, SRs and SEGs of the first nodules,
and writes ``DIR/fingerprint.json``: digests of the vectors, the reports, the DICOM objects, the
OpenAPI document and every command's ``--help``. Run it at two commits on the same data and model,
then ``python -m bench.parity compare A/fingerprint.json B/fingerprint.json``.

What is normalised, and why: fresh DICOM UIDs (``generate_uid``), content dates and times, the
catalogue version's name and creation time, and the run's own paths differ between any two
runs of the same code; everything else must match byte for byte.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger("bench.parity")

#: pydicom's and highdicom's UID roots: UIDs the code generated rather than read from the scan.
_GENERATED_ROOTS = ("1.2.826.0.1.3680043.8.498.", "1.2.826.0.1.3680043.10.511.3.")
_TIME_VRS = {"DA", "TM", "DT"}
_COMMANDS = (
    "synth",
    "patch",
    "import-crops",
    "real-set",
    "labels",
    "train",
    "build",
    "add",
    "verify",
    "bootstrap",
    "evaluate",
    "report",
    "crossval",
    "describe",
)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _index_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "indexer", *args], capture_output=True, text=True, check=False
    )


def _help_texts() -> dict[str, str]:
    """Every command's ``--help``, as the user reads it."""
    texts = {"nodule-index": _index_cli("--help").stdout}
    for command in _COMMANDS:
        texts[command] = _index_cli(command, "--help").stdout
    return texts


def _normalise_dicom(data: bytes) -> str:
    """A DICOM object as JSON, generated UIDs numbered in order of appearance, times blanked."""
    import io

    import pydicom

    dataset = pydicom.dcmread(io.BytesIO(data))
    seen: dict[str, str] = {}

    def rename(value: str) -> str:
        if not value.startswith(_GENERATED_ROOTS):
            return value
        return seen.setdefault(value, f"generated-{len(seen)}")

    def walk(ds: Any) -> None:
        for element in ds:
            if element.VR == "SQ":
                for item in element.value:
                    walk(item)
            elif element.VR == "UI" and element.value:
                if isinstance(element.value, str):
                    element.value = rename(element.value)
                else:
                    element.value = [rename(str(v)) for v in element.value]
            elif element.VR in _TIME_VRS and element.value:
                element.value = ""

    walk(dataset.file_meta)
    walk(dataset)
    meta = dataset.file_meta.to_json_dict()
    meta.pop("00020000", None)  # the meta group's length follows the fresh UIDs' lengths
    body = dataset.to_json_dict(bulk_data_threshold=1 << 30)
    return json.dumps({"meta": meta, "body": body}, sort_keys=True)


def _multipart_parts(body: bytes, content_type: str) -> list[bytes]:
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    parts = []
    for chunk in body.split(b"--" + boundary)[1:-1]:
        _, _, payload = chunk.partition(b"\r\n\r\n")
        parts.append(payload[:-2] if payload.endswith(b"\r\n") else payload)
    return parts


def _version_dir(index: Path) -> Path:
    return index / "versions" / (index / "CURRENT").read_text().strip()


def _normalise_text(text: str, index: Path, version: str) -> str:
    text = text.replace(str(index.resolve()), "<index>").replace(str(index), "<index>")
    text = text.replace(version, "<version>")
    return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?", "<time>", text)


def _catalogue_digests(index: Path) -> dict[str, str]:
    import sqlite3

    import numpy as np

    version = _version_dir(index)
    vectors = np.load(version / "embeddings.npy")
    out = {"embeddings": _sha(vectors.tobytes()) + f" {vectors.shape} {vectors.dtype}"}
    with sqlite3.connect(version / "catalog.sqlite") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in sorted(set(tables) - {"builds"}):  # builds: when and by which commit
            rows = "\n".join(sorted(map(repr, db.execute(f"SELECT * FROM {table}").fetchall())))
            (index.parent / f"catalog.{table}.txt").write_text(rows)
            out[f"catalog.{table}"] = _sha(rows.encode())
    manifest = json.loads((version / "manifest.json").read_text())
    # Which commit built it, when, where the model lay and how long it took: a run's own.
    for key in ("code_version", "created_at", "model_dir", "timings_s"):
        manifest.pop(key, None)
    manifest["model"].pop("code_version", None)
    manifest["files"].pop("catalog.sqlite", None)  # its builds table holds the build's time
    out["manifest"] = _normalise_text(json.dumps(manifest, sort_keys=True), index, version.name)
    return out


def _without(value: Any, key: str) -> Any:
    """A JSON value without ``key`` at any depth (how long a run took is its own)."""
    if isinstance(value, dict):
        return {k: _without(v, key) for k, v in value.items() if k != key}
    if isinstance(value, list):
        return [_without(v, key) for v in value]
    return value


def _report_digests(report: Path, index: Path) -> dict[str, str]:
    version = _version_dir(index).name
    out = {}
    for name in ("report.json", "report.md"):
        text = (report / name).read_text()
        if name.endswith(".json"):
            # How long the run took and which commit ran it are the run's own.
            kept = _without(_without(json.loads(text), "elapsed_s"), "code_version")
            text = json.dumps(kept, indent=1, sort_keys=True)
        out[name] = _normalise_text(text, index, version)
    return out


def _service_digests(index: Path, data: Path, n_queries: int, dumps: Path) -> dict[str, str]:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import AppSettings

    with (data / "annotations.csv").open() as f:
        every = list(csv.DictReader(f))
    # Half from series stored as DICOM (their SR and SEG), half from MetaImage scans.
    dicom = {p.name for p in (data / "dicom").iterdir()} if (data / "dicom").is_dir() else set()
    in_dicom = [r for r in every if r["seriesuid"] in dicom]
    rows = in_dicom[: n_queries // 2] + [r for r in every if r["seriesuid"] not in dicom]
    rows = rows[:n_queries]
    settings = AppSettings(index_dir=index, data_dir=data, device="cpu")
    version = _version_dir(index).name
    out: dict[str, str] = {}
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        document = json.dumps(client.get("/openapi.json").json(), indent=1, sort_keys=True)
        (dumps / "openapi.json").write_text(document)
        out["openapi"] = _sha(document.encode())
        for i, row in enumerate(rows):
            query = {
                "series_uid": row["seriesuid"],
                "center_xyz": [float(row[c]) for c in ("coordX", "coordY", "coordZ")],
                "k": 5,
                "estimate_size": True,
            }
            search = client.post("/v1/search/coordinate", json=query)
            answer = json.dumps(search.json(), sort_keys=True).replace(version, "<version>")
            out[f"search.{i}"] = f"{search.status_code} {answer}"
            report = client.post("/v1/reports/sr", params={"seg": "true"}, json=query)
            kind = report.headers.get("content-type", "")
            parts = (
                _multipart_parts(report.content, kind)
                if kind.startswith("multipart/")
                else [report.content]
            )
            for j, part in enumerate(parts):
                if report.status_code != 200:
                    out[f"dicom.{i}.{j}"] = f"{report.status_code} {part[:200]!r}"
                    continue
                text = _normalise_dicom(part).replace(version, "<version>")
                (dumps / f"dicom.{i}.{j}.json").write_text(text)
                out[f"dicom.{i}.{j}"] = _sha(text.encode())
    return out


def record(data: Path, model: Path, out: Path, n_queries: int) -> dict[str, Any]:
    """Build, evaluate and query; the fingerprint of what came out."""
    shutil.rmtree(out, ignore_errors=True)  # a fresh catalogue: nothing reused from a run before
    out.mkdir(parents=True)
    index, report = out / "index", out / "report"
    for args in (
        ("build", "--data", str(data), "--model", str(model), "--index", str(index)),
        ("evaluate", "--index", str(index), "--out", str(report)),
    ):
        done = _index_cli(*args)
        if done.returncode:
            raise SystemExit(f"nodule-index {args[0]} failed:\n{done.stderr[-2000:]}")
    fingerprint: dict[str, Any] = {
        "help": _help_texts(),
        "catalogue": _catalogue_digests(index),
        "report": _report_digests(report, index),
        "service": _service_digests(index, data, n_queries, out),
    }
    (out / "fingerprint.json").write_text(json.dumps(fingerprint, indent=1, sort_keys=True))
    return fingerprint


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Keys whose values differ (or exist on one side only)."""
    diffs = []
    for group in sorted(set(a) | set(b)):
        left, right = a.get(group, {}), b.get(group, {})
        for key in sorted(set(left) | set(right)):
            if left.get(key) != right.get(key):
                diffs.append(f"{group}.{key}")
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.parity", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--data", type=Path, required=True)
    rec.add_argument("--model", type=Path, required=True)
    rec.add_argument("--out", type=Path, required=True)
    rec.add_argument("--queries", type=int, default=6)
    cmp_ = sub.add_parser("compare")
    cmp_.add_argument("before", type=Path)
    cmp_.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.action == "record":
        fingerprint = record(args.data, args.model, args.out, args.queries)
        logger.info("%d digests in %s", sum(map(len, fingerprint.values())), args.out)
        return 0
    before = json.loads(args.before.read_text())
    after = json.loads(args.after.read_text())
    diffs = compare(before, after)
    for key in diffs:
        logger.info("differs: %s", key)
    logger.info("%s", "identical" if not diffs else f"{len(diffs)} differ")
    return 1 if diffs else 0


if __name__ == "__main__":
    raise SystemExit(main())
