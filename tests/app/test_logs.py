"""No identifier in any log line: a real ``nodule-api`` (uvicorn, debug logging) through a whole
session of searches, views, uploads, errors and reloads, then every line of its output searched
for each series/study/instance UID, patient id, name and birth date the session used."""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.helpers.live_server import live_api

# Runs nodule-api as a server process and reads its whole log: make test, not test-fast.
pytestmark = pytest.mark.slow

ADMIN_KEY = "log-test-admin-key"
BAD_BIRTH_DATE = "1945-01-01"
BAD_UID = "not-a-uid-" + "x" * 70
PATIENT = {
    "PatientName": "Doe^Jane",
    "PatientID": "MRN-0042-LOGTEST",
    "PatientBirthDate": "19450101",
}


class Session:
    """A small HTTP client for the session (stdlib only: the log is the server's, not ours)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.statuses: list[tuple[str, int]] = []

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.url + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, content = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, content = e.code, e.read()
        self.statuses.append((path.split("?")[0], status))
        return status, content

    def json(self, method: str, path: str, payload: Any = None, **headers: str) -> Any:
        body = json.dumps(payload).encode() if payload is not None else None
        status, content = self.call(
            method, path, body, {"content-type": "application/json", **headers}
        )
        return status, json.loads(content) if content[:1] in (b"{", b"[") else None

    def upload(
        self, name: str, data: bytes, *, path: str = "/v1/search/upload", **form: str
    ) -> tuple[int, Any]:
        boundary = "----nodule-log-test"
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in form.items()
        ]
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        status, content = self.call(
            "POST", path, body, {"content-type": f"multipart/form-data; boundary={boundary}"}
        )
        return status, json.loads(content) if content[:1] == b"{" else content


@pytest.fixture(scope="module")
def logged_server(
    app_index: Path, synth_set: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    env = {
        "NODULE_INDEX_DIR": str(app_index),
        "NODULE_DATA_DIR": str(synth_set),
        "NODULE_DEVICE": "cpu",
        "NODULE_API_KEY": ADMIN_KEY,
        "NODULE_LOG_LEVEL": "debug",
    }
    log_path = tmp_path_factory.mktemp("logged") / "server.log"
    with live_api(env, log_path) as url:
        yield url, log_path


def _identified_dicom_zip(synth_set: Path) -> tuple[bytes, set[str]]:
    """The synthetic DICOM series re-identified as a patient, with fresh UIDs; the identifiers."""
    (folder,) = list((synth_set / "dicom").iterdir())
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    identifiers = {study, series, frame, *PATIENT.values(), "Doe", "Jane"}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            ds = pydicom.dcmread(path)
            for keyword, value in PATIENT.items():
                setattr(ds, keyword, value)
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.FrameOfReferenceUID = frame
            ds.SOPInstanceUID = generate_uid()
            identifiers.add(str(ds.SOPInstanceUID))
            out = io.BytesIO()
            ds.save_as(out)
            archive.writestr(f"{PATIENT['PatientID']}/{path.name}", out.getvalue())
    return buffer.getvalue(), identifiers


def _stored_dicom(synth_set: Path) -> tuple[str, list[float], set[str]]:
    """The stored DICOM series, a point in it, and its slices' identifiers."""
    (folder,) = list((synth_set / "dicom").iterdir())
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.iterdir())]
    middle = headers[len(headers) // 2]
    x, y, z = (float(v) for v in middle.ImagePositionPatient)
    identifiers = {str(h.SOPInstanceUID) for h in headers}
    identifiers |= {str(middle.StudyInstanceUID), str(middle.FrameOfReferenceUID)}
    return str(middle.SeriesInstanceUID), [x + 20.0, y + 20.0, z], identifiers


def _with_bad_headers(archive: bytes) -> bytes:
    """The upload with a malformed birth date and a SOP instance UID that is not a UID."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(archive)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive_out,
    ):
        for i, name in enumerate(source.namelist()):
            ds = pydicom.dcmread(io.BytesIO(source.read(name)))
            ds.PatientBirthDate = BAD_BIRTH_DATE
            if i == 0:
                ds.SOPInstanceUID = BAD_UID
            buffer = io.BytesIO()
            ds.save_as(buffer)
            archive_out.writestr(name, buffer.getvalue())
    return out.getvalue()


def _reports(session: Session, synth_set: Path, archive: bytes) -> set[str]:
    """SR and SEG of a stored series, of an upload, and uploads with bad headers (422)."""
    series, point, used = _stored_dicom(synth_set)
    query = {"series_uid": series, "center_xyz": point, "k": 3}
    assert session.json("POST", "/v1/reports/sr?seg=true", query)[0] == 200
    center = ",".join(str(v) for v in point)
    report = "/v1/reports/sr/upload"
    status, body = session.upload("ct.zip", archive, path=report, center_xyz=center, seg="true")
    assert status == 200, body
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the bad values written here
        bad = _with_bad_headers(archive)
    status, body = session.upload("ct.zip", bad, path=report, center_xyz=center, seg="true")
    assert status == 422, body
    return used | {BAD_BIRTH_DATE, BAD_UID}


def _run_session(session: Session, synth_set: Path) -> set[str]:
    """Every kind of request the service answers; returns the identifiers the session used."""
    used: set[str] = set()
    status, listing = session.json("GET", "/v1/scans")
    assert status == 200
    for scan in listing["scans"]:
        uid, patient = scan["series_uid"], scan["patient_id"]
        used |= {uid, *([patient] if patient else [])}
        status, info = session.json("GET", f"/v1/scans/{uid}")
        assert status == 200
        nodule = info["nodules"][0] if info["nodules"] else None
        if nodule is None:
            continue
        center = nodule["center_xyz"]
        session.call("GET", f"/v1/scans/{uid}/axial.png?z={center[2]}")
        session.call("GET", f"/v1/scans/{uid}/preview.png?center_xyz={','.join(map(str, center))}")
        query = {
            "series_uid": uid,
            "center_xyz": center,
            "k": 3,
            "filters": {"exclude_patient_id": patient},
        }
        assert session.json("POST", "/v1/search/coordinate", query)[0] == 200
        nid = nodule["id"]
        session.call("GET", f"/v1/nodules/{nid}/similar?k=3&exclude_patient_id={patient}")
        session.call("GET", f"/v1/nodules/{nid}/preview.png")
        # Errors that name the series: outside the volume, a study without a PACS.
        outside = {**query, "center_xyz": [9000.0, 9000.0, 9000.0]}
        assert session.json("POST", "/v1/search/coordinate", outside)[0] == 422
        study = generate_uid()
        used.add(study)
        assert (
            session.json("POST", "/v1/search/coordinate", {**query, "study_uid": study})[0] == 422
        )
    unknown = generate_uid()
    used.add(unknown)
    assert (
        session.json(
            "POST", "/v1/search/coordinate", {"series_uid": unknown, "center_xyz": [0, 0, 0]}
        )[0]
        == 404
    )
    assert session.call("GET", f"/v1/scans/{unknown}/axial.png?z=0")[0] == 404
    archive, identifiers = _identified_dicom_zip(synth_set)
    used |= identifiers
    status, body = session.upload("ct.zip", archive)
    assert status == 200, body
    series = next(i for i in identifiers if i not in PATIENT.values())
    assert session.upload("ct.zip", archive, center_xyz="9000,9000,9000")[0] == 422
    assert session.upload("ct.zip", archive, series_uid=unknown)[0] == 422
    assert series
    used |= _reports(session, synth_set, archive)
    assert session.json("POST", "/v1/admin/reload", None, **{"x-api-key": "wrong"})[0] == 401
    assert session.json("POST", "/v1/admin/reload", None, **{"x-api-key": ADMIN_KEY})[0] == 200
    assert session.call("GET", "/metrics")[0] == 200
    return used


def test_no_identifier_appears_in_any_log_line(
    logged_server: tuple[str, Path], synth_set: Path
) -> None:
    url, log_path = logged_server
    session = Session(url)
    used = _run_session(session, synth_set)
    time.sleep(0.5)  # the last access lines
    lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    assert len(lines) >= len(session.statuses)
    access = [line for line in lines if " app.access: " in line]
    assert len(access) >= len(session.statuses)
    assert any('"GET /v1/scans/{series_uid}/axial.png" 200' in line for line in access)
    assert any('"POST /v1/search/upload" 200' in line for line in access)
    leaks = [(i, line) for i in sorted(used) for line in lines if i in line]
    assert not leaks, leaks[:5]
    assert not any("?" in line.split('"')[1] for line in access if line.count('"') >= 2)
