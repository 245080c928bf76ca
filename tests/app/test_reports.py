"""POST /v1/reports/sr: a search as a DICOM SR of the queried study."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
from fastapi.testclient import TestClient

from model.ct import open_volume
from model.dicom_io import DicomSeriesSource
from model.sr import DISCLAIMER


def _dicom_series(synth_set: Path) -> tuple[str, tuple[float, float, float], pydicom.Dataset]:
    folder = next((synth_set / "dicom").iterdir())
    source = DicomSeriesSource(folder)
    middle = np.asarray(source.geometry.shape_zyx, dtype=np.float64) / 2
    x, y, z = (float(v) for v in source.geometry.index_zyx_to_world(middle))
    header = pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True)
    return source.series_uid, (x, y, z), header


def test_the_sr_of_a_search_is_the_queried_studys(client: TestClient, synth_set: Path) -> None:
    series_uid, center, header = _dicom_series(synth_set)
    body = {"series_uid": series_uid, "center_xyz": list(center), "k": 3}
    answer = client.post("/v1/reports/sr", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/dicom"
    sr = pydicom.dcmread(io.BytesIO(answer.content))
    assert sr.Modality == "SR"
    assert sr.StudyInstanceUID == header.StudyInstanceUID
    assert sr.PatientID == header.PatientID
    texts = [str(getattr(i, "TextValue", "")) for i in sr.ContentSequence]
    assert DISCLAIMER in texts
    searched = client.post("/v1/search/coordinate", json=body).json()
    groups = sr.ContentSequence[-2].ContentSequence  # imaging measurements
    assert len(groups) == 1 + len(searched["neighbors"]) + 1


def test_an_sr_needs_a_dicom_series(client: TestClient, app_index: Path, synth_set: Path) -> None:
    dicom_uid, _, _ = _dicom_series(synth_set)
    mhd = next(p for p in sorted(synth_set.glob("subset*/*.mhd")) if p.stem != dicom_uid)
    geometry = open_volume(mhd).geometry
    middle = np.asarray(geometry.shape_zyx, dtype=np.float64) / 2
    center = [float(v) for v in geometry.index_zyx_to_world(middle)]
    body = {"series_uid": mhd.stem, "center_xyz": center, "k": 2}
    answer = client.post("/v1/reports/sr", json=body)
    assert answer.status_code == 422
    assert "DICOM" in answer.json()["detail"]
