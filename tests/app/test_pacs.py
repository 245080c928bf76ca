"""Coordinate queries from a real Orthanc PACS over DICOMweb, next to the same query on files."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.main import create_app
from app.settings import AppSettings
from tests.helpers.dicom import multipart_parts, referenced_instances
from tests.helpers.orthanc import Orthanc
from tests.helpers.synthetic import growable_nodule

# Runs a real Orthanc (DICOMweb): make test, not test-fast.
pytestmark = pytest.mark.slow


def _center(shared_data: Path, series_uid: str) -> list[float]:
    with (shared_data / "luna16/annotations.csv").open() as f:
        row = next(r for r in csv.DictReader(f) if r["seriesuid"] == series_uid)
    return [float(row[k]) for k in ("coordX", "coordY", "coordZ")]


def _settings(app_index: Path, data_dir: Path, orthanc: Orthanc | None) -> AppSettings:
    settings = AppSettings(index_dir=app_index, data_dir=data_dir, device="cpu")
    if orthanc is None:
        return settings
    return settings.model_copy(
        update={
            "dicomweb_url": orthanc.url,
            "dicomweb_user": orthanc.user,
            "dicomweb_password": SecretStr(orthanc.password),
            "dicomweb_timeout_s": 3.0,
        }
    )


def test_pacs_query_equals_the_file_query(
    app_index: Path,
    orthanc: Orthanc,
    pacs_lidc: tuple[str, str, Path],
    shared_data: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    study, series, folder = pacs_lidc
    center = _center(shared_data, series)
    files = tmp_path / "files"
    files.mkdir()
    (files / series).symlink_to(folder, target_is_directory=True)
    body = {"series_uid": series, "center_xyz": center, "k": 5}
    with TestClient(create_app(_settings(app_index, files, None))) as client:
        on_files = client.post("/v1/search/coordinate", json=body)
        no_pacs = client.post("/v1/search/coordinate", json={**body, "study_uid": study})
    assert on_files.status_code == 200, on_files.text
    assert no_pacs.status_code == 422
    assert "no PACS is configured" in no_pacs.json()["detail"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with (
        caplog.at_level(logging.DEBUG),
        TestClient(create_app(_settings(app_index, empty, orthanc))) as client,
    ):
        by_study = client.post("/v1/search/coordinate", json={**body, "study_uid": study})
        by_series_only = client.post("/v1/search/coordinate", json=body)  # found by QIDO
    for response in (by_study, by_series_only):
        assert response.status_code == 200, response.text
        ids = [n["id"] for n in response.json()["neighbors"]]
        assert ids == [n["id"] for n in on_files.json()["neighbors"]]
        np.testing.assert_allclose(
            [n["similarity"] for n in response.json()["neighbors"]],
            [n["similarity"] for n in on_files.json()["neighbors"]],
            atol=1e-6,
        )
    for secret in (orthanc.password, series, study):
        assert secret not in caplog.text


def test_pacs_errors_404_and_503_and_the_service_stays_up(
    app_index: Path,
    orthanc: Orthanc,
    pacs_lidc: tuple[str, str, Path],
    shared_data: Path,
    tmp_path: Path,
) -> None:
    study, series, _ = pacs_lidc
    center = _center(shared_data, series)
    with TestClient(create_app(_settings(app_index, tmp_path, orthanc))) as client:
        unknown = client.post(
            "/v1/search/coordinate",
            json={"series_uid": "1.2.3.4.5", "study_uid": study, "center_xyz": center},
        )
        assert unknown.status_code == 404
        assert "not found in the PACS" in unknown.json()["detail"]
        not_a_uid = client.post(
            "/v1/search/coordinate",
            json={"series_uid": series + ".99", "study_uid": study, "center_xyz": center},
        )
        assert not_a_uid.status_code == 422
        assert "not a DICOM UID" in not_a_uid.json()["detail"]
        orthanc.stop()
        try:
            down = client.post(
                "/v1/search/coordinate",
                json={"series_uid": "1.2.3.4.5.6", "study_uid": study, "center_xyz": center},
            )
            assert down.status_code == 503
            assert "PACS cannot be reached" in down.json()["detail"]
            assert client.get("/healthz").status_code == 200
            assert client.get("/readyz").status_code == 200
        finally:
            orthanc.start()
        # Back up: the service recovers without a restart.
        again = client.post(
            "/v1/search/coordinate",
            json={"series_uid": series, "study_uid": study, "center_xyz": center},
        )
        assert again.status_code == 200, again.text


def test_pacs_settings_never_show_the_password() -> None:
    settings = AppSettings(
        dicomweb_url="http://pacs/dicom-web",
        dicomweb_user="u",
        dicomweb_password=SecretStr("s3cret-value"),
    )
    config = settings.pacs_config()
    assert config is not None
    assert config.password == "s3cret-value"
    assert "s3cret-value" not in repr(config)
    assert "s3cret-value" not in repr(settings)
    assert AppSettings(dicomweb_url="  ").pacs_config() is None


def test_an_sr_stored_in_the_pacs_is_found_again_and_retrieved_byte_for_byte(
    app_index: Path,
    orthanc: Orthanc,
    pacs_lidc: tuple[str, str, Path],
    shared_data: Path,
    tmp_path: Path,
) -> None:
    study, series, folder = pacs_lidc
    body = {"series_uid": series, "center_xyz": _center(shared_data, series), "k": 3}
    files = tmp_path / "files"
    files.mkdir()
    (files / series).symlink_to(folder, target_is_directory=True)
    with TestClient(create_app(_settings(app_index, files, orthanc))) as client:
        on_files = client.post("/v1/reports/sr", json=body)
        not_from_pacs = client.post("/v1/reports/sr?store=true", json=body)
        stored = client.post("/v1/reports/sr?store=true", json={**body, "study_uid": study})
    assert on_files.status_code == 200, on_files.text
    assert not_from_pacs.status_code == 422
    assert "read from files" in not_from_pacs.json()["detail"]
    assert stored.status_code == 201, stored.text
    assert stored.headers["content-type"] == "application/dicom"
    sr = pydicom.dcmread(io.BytesIO(stored.content))
    # The PACS's metadata gives the same evidence as the files' headers.
    file_sr = pydicom.dcmread(io.BytesIO(on_files.content))
    assert referenced_instances(sr) == referenced_instances(file_sr)
    assert len(referenced_instances(sr)) > 1
    assert (sr.StudyInstanceUID, sr.PatientID) == (study, file_sr.PatientID)
    found = orthanc.client().search_for_instances(
        study, search_filters={"SOPInstanceUID": sr.SOPInstanceUID, "Modality": "SR"}
    )
    assert len(found) == 1
    assert found[0]["0020000E"]["Value"] == [sr.SeriesInstanceUID]
    location = stored.headers["location"]
    assert location.endswith(f"/instances/{sr.SOPInstanceUID}")
    assert orthanc.retrieve_bytes(location) == stored.content


def test_storing_an_sr_needs_a_pacs(client: TestClient) -> None:
    body = {"series_uid": "1.2.3.4", "center_xyz": [0.0, 0.0, 0.0]}
    answer = client.post("/v1/reports/sr?store=true", json=body)
    assert answer.status_code == 422
    assert "NODULE_DICOMWEB_URL" in answer.json()["detail"]


def test_with_seg_the_sr_and_the_seg_are_both_stored_in_the_pacs(
    app_index: Path, orthanc: Orthanc, synth_set: Path, tmp_path: Path
) -> None:
    source, center = growable_nodule(synth_set)
    study, series = orthanc.store(source.folder)
    body = {"series_uid": series, "study_uid": study, "center_xyz": list(center), "k": 3}
    empty = tmp_path / "empty"
    empty.mkdir()
    with TestClient(create_app(_settings(app_index, empty, orthanc))) as client:
        stored = client.post("/v1/reports/sr?store=true&seg=true", json=body)
    assert stored.status_code == 201, stored.text
    parts = multipart_parts(stored.content, stored.headers["content-type"])
    assert len(parts) == 2
    sr, seg = (pydicom.dcmread(io.BytesIO(p)) for p in parts)
    assert stored.headers["location"].endswith(f"/instances/{sr.SOPInstanceUID}")
    for dataset, encoded, modality in ((sr, parts[0], "SR"), (seg, parts[1], "SEG")):
        found = orthanc.client().search_for_instances(
            study, search_filters={"SOPInstanceUID": dataset.SOPInstanceUID, "Modality": modality}
        )
        assert len(found) == 1, modality
        url = (
            f"{orthanc.url}/studies/{study}/series/{dataset.SeriesInstanceUID}"
            f"/instances/{dataset.SOPInstanceUID}"
        )
        assert orthanc.retrieve_bytes(url) == encoded
