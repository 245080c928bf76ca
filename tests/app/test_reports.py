"""POST /v1/reports/sr: a search as a DICOM SR of the queried study."""

from __future__ import annotations

import io
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.reports import Reporter
from app.settings import AppSettings
from model.clinical.sr import DISCLAIMER
from model.ct.dicom import DicomSeriesSource
from model.ct.open import open_volume
from tests.helpers.catalogue import serving_edited_copy
from tests.helpers.dicom import (
    SEGMENTATION_STORAGE,
    content_items,
    multipart_parts,
    referenced_instances,
)
from tests.helpers.synthetic import growable_nodule


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
    assert len(groups) == 2 + len(searched["neighbors"]) + 1  # the point on its slice and in 3-D


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


def test_with_seg_the_estimated_mask_rides_along(client: TestClient, synth_set: Path) -> None:
    source, center = growable_nodule(synth_set)
    body = {"series_uid": source.series_uid, "center_xyz": list(center), "k": 3}
    answer = client.post("/v1/reports/sr?seg=true", json=body)
    assert answer.status_code == 200, answer.text
    content_type = answer.headers["content-type"]
    assert content_type.startswith('multipart/related; type="application/dicom"')
    sr, seg = (
        pydicom.dcmread(io.BytesIO(p)) for p in multipart_parts(answer.content, content_type)
    )
    assert sr.Modality == "SR"
    assert (seg.SOPClassUID, seg.Modality) == (SEGMENTATION_STORAGE, "SEG")
    assert seg.StudyInstanceUID == sr.StudyInstanceUID
    segments = [
        i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        for i in content_items(sr.ContentSequence)
        if i.ValueType == "IMAGE"
        and i.ReferencedSOPSequence[0].ReferencedSOPClassUID == SEGMENTATION_STORAGE
    ]
    assert segments == [seg.SOPInstanceUID]


def _zip_of(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, path.name)
    return buffer.getvalue()


def _measurements(sr: pydicom.Dataset) -> list[tuple[str, float]]:
    return [
        (
            str(i.ConceptNameCodeSequence[0].CodeMeaning),
            float(i.MeasuredValueSequence[0].NumericValue),
        )
        for i in content_items(sr.ContentSequence)
        if i.ValueType == "NUM"
    ]


def test_the_sr_of_an_uploaded_series_is_the_sr_of_the_stored_one(
    client: TestClient, synth_set: Path
) -> None:
    source, center = growable_nodule(synth_set)
    body = {"series_uid": source.series_uid, "center_xyz": list(center), "k": 3}
    stored = client.post("/v1/reports/sr?seg=true", json=body)
    assert stored.status_code == 200, stored.text
    stored_sr, stored_seg = (
        pydicom.dcmread(io.BytesIO(p))
        for p in multipart_parts(stored.content, stored.headers["content-type"])
    )
    form = {"center_xyz": ",".join(str(v) for v in center), "k": "3", "seg": "true"}
    upload = client.post(
        "/v1/reports/sr/upload", files={"file": ("series.zip", _zip_of(source.folder))}, data=form
    )
    assert upload.status_code == 200, upload.text
    sr, seg = (
        pydicom.dcmread(io.BytesIO(p))
        for p in multipart_parts(upload.content, upload.headers["content-type"])
    )
    assert (sr.StudyInstanceUID, sr.PatientID) == (stored_sr.StudyInstanceUID, stored_sr.PatientID)
    # The same slices cited, the same neighbours and measurements as for the stored series...
    assert referenced_instances(sr) - {seg.SOPInstanceUID} == referenced_instances(stored_sr) - {
        stored_seg.SOPInstanceUID
    }
    assert _measurements(sr) == _measurements(stored_sr)
    # ... and the same mask in the SEG.
    assert seg.NumberOfFrames == stored_seg.NumberOfFrames
    assert np.array_equal(seg.pixel_array, stored_seg.pixel_array)
    # The SEG sent back as the mask gives the same size.
    with_mask = client.post(
        "/v1/reports/sr/upload",
        files={
            "file": ("series.zip", _zip_of(source.folder)),
            "mask": (
                "mask.dcm",
                multipart_parts(upload.content, upload.headers["content-type"])[1],
            ),
        },
        data={"k": "3"},
    )
    assert with_mask.status_code == 200, with_mask.text
    assert with_mask.headers["content-type"] == "application/dicom"
    masked = pydicom.dcmread(io.BytesIO(with_mask.content))
    assert [m for m in _measurements(masked) if m[0] in ("Diameter", "Volume")] == [
        m for m in _measurements(stored_sr) if m[0] in ("Diameter", "Volume")
    ]


def test_an_sr_upload_must_be_a_dicom_series(client: TestClient, synth_set: Path) -> None:
    mhd = next(synth_set.glob("subset*/*.mhd"))
    geometry = open_volume(mhd).geometry
    middle = np.asarray(geometry.shape_zyx, dtype=np.float64) / 2
    center = ",".join(str(float(v)) for v in geometry.index_zyx_to_world(middle))
    files = {"file": ("ct.zip", _zip_of_files([mhd, mhd.with_suffix(".raw")]))}
    answer = client.post("/v1/reports/sr/upload", files=files, data={"center_xyz": center})
    assert answer.status_code == 422
    assert "upload a .zip of the DICOM series" in answer.json()["detail"]


def _zip_of_files(paths: list[Path]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in paths:
            archive.write(path, path.name)
    return buffer.getvalue()


VOTE_CONCEPTS = {("99NODSRCH", "SIM003"), ("99NODSRCH", "SIM004")}


def _concepts(sr: pydicom.Dataset) -> dict[tuple[str, str], pydicom.Dataset]:
    return {
        (
            str(i.ConceptNameCodeSequence[0].CodingSchemeDesignator),
            str(i.ConceptNameCodeSequence[0].CodeValue),
        ): i
        for i in content_items(sr.ContentSequence)
    }


@pytest.mark.parametrize(("threshold", "withheld"), [(0.99999, True), (-1.0, False)])
def test_the_sr_says_what_the_screen_says(
    app_index: Path, synth_set: Path, tmp_path: Path, threshold: float, withheld: bool
) -> None:
    """A withheld search's SR codes no vote; a close match's carries it and the threshold."""
    entry = {"value": threshold, "percentile": 5.0, "n_queries": 3, "n_nodules": 3}
    source, center = growable_nodule(synth_set)
    body = {"series_uid": source.series_uid, "center_xyz": list(center), "k": 3}
    with serving_edited_copy(app_index, synth_set, tmp_path, entry) as service:
        screen = service.post("/v1/search/coordinate", json=body).json()
        answer = service.post("/v1/reports/sr", json=body)
    assert answer.status_code == 200, answer.text
    assert screen["vote"]["withheld"] is withheld
    concepts = _concepts(pydicom.dcmread(io.BytesIO(answer.content)))
    if withheld:
        assert not VOTE_CONCEPTS & concepts.keys()
    else:
        assert concepts.keys() >= VOTE_CONCEPTS
    threshold_item = concepts[("99NODSRCH", "SIM011")]
    assert float(threshold_item.MeasuredValueSequence[0].NumericValue) == threshold
    state = str(concepts[("99NODSRCH", "SIM009")].TextValue)
    assert ("No close match" in state) is withheld


def test_a_ruler_measurement_reaches_the_sr(client: TestClient, synth_set: Path) -> None:
    source, center = growable_nodule(synth_set)
    body = {
        "series_uid": source.series_uid,
        "center_xyz": list(center),
        "k": 3,
        "measured_axes_mm": {"long_axis_mm": 6.5, "short_axis_mm": 11.0},
    }
    screen = client.post("/v1/search/coordinate", json=body).json()
    measured = screen["size_measured"]
    assert (measured["long_axis_mm"], measured["short_axis_mm"]) == (11.0, 6.5)
    assert measured["mean_diameter_mm"] == 8.8
    answer = client.post("/v1/reports/sr", json=body)
    assert answer.status_code == 200, answer.text
    concepts = _concepts(pydicom.dcmread(io.BytesIO(answer.content)))
    long_axis = concepts[("SCT", "103339001")]
    assert float(long_axis.MeasuredValueSequence[0].NumericValue) == 11.0
    category = concepts[("99NODSRCH", "SIM015")]
    assert category.ConceptCodeSequence[0].CodeMeaning == measured["lung_rads"]
    # The user's axes replace the estimate's diameter and category: one of each in the SR.
    items = list(content_items(pydicom.dcmread(io.BytesIO(answer.content)).ContentSequence))
    diameters = [i for i in items if i.ConceptNameCodeSequence[0].CodeValue == "81827009"]
    assert [float(d.MeasuredValueSequence[0].NumericValue) for d in diameters] == [8.8]
    assert ("99NODSRCH", "SIM006") not in concepts  # the estimate's Lung-RADS category
    asked = client.post("/v1/search/coordinate", json={**body, "estimate_size": True}).json()
    assert asked["size_estimate"]["superseded"] is True


def test_a_bad_ruler_measurement_is_a_422(client: TestClient, synth_set: Path) -> None:
    source, center = growable_nodule(synth_set)
    body = {
        "series_uid": source.series_uid,
        "center_xyz": list(center),
        "measured_axes_mm": {"long_axis_mm": -1, "short_axis_mm": 11.0},
    }
    answer = client.post("/v1/search/coordinate", json=body)
    assert answer.status_code == 422
    assert "measured_axes_mm" in answer.text


@pytest.mark.parametrize(
    ("data_dir", "says"), [(None, "no data root is configured"), ("missing", "does not exist")]
)
def test_a_dicom_series_without_its_data_root_is_told_why(
    app_index: Path, synth_set: Path, tmp_path: Path, data_dir: str | None, says: str
) -> None:
    """A DICOM series the catalogue read from its .mhd copy needs the data root for its folder."""
    series_uid, center, _ = _dicom_series(synth_set)
    root = None if data_dir is None else tmp_path / data_dir
    settings = AppSettings(index_dir=app_index, data_dir=root, device="cpu")
    with TestClient(create_app(settings)) as service:
        body = {"series_uid": series_uid, "center_xyz": list(center), "k": 2}
        answer = service.post("/v1/reports/sr", json=body)
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert says in detail
    assert "NODULE_DATA_DIR" in detail
    assert "stored as an image file" not in detail


def test_report_and_size_work_is_bounded(
    app_index: Path, synth_set: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every report slot taken, SRs and size estimates get 503 + Retry-After; others pass."""
    release, started = threading.Event(), threading.Event()
    real = Reporter.report_sr

    def held(self: Reporter, *args: Any, **kwargs: Any) -> Any:
        started.set()
        release.wait(30)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Reporter, "report_sr", held)
    settings = AppSettings(
        index_dir=app_index, data_dir=synth_set, device="cpu", max_reports=1, report_wait_s=0.1
    )
    source, center = growable_nodule(synth_set)
    body = {"series_uid": source.series_uid, "center_xyz": list(center), "k": 2}
    with TestClient(create_app(settings)) as busy, ThreadPoolExecutor(1) as pool:
        first = pool.submit(busy.post, "/v1/reports/sr", json=body)
        assert started.wait(30)
        refused = [
            busy.post("/v1/reports/sr", json=body),
            busy.post("/v1/search/coordinate", json={**body, "estimate_size": True}),
            busy.get("/v1/nodules/0", params={"estimate_size": True}),
        ]
        plain = busy.post("/v1/search/coordinate", json=body)  # no size work: not bounded
        release.set()
        for answer in refused:
            assert answer.status_code == 503, answer.text
            assert int(answer.headers["retry-after"]) >= 1
            assert "NODULE_MAX_REPORTS" in answer.json()["detail"]
        assert plain.status_code == 200
        assert first.result(timeout=60).status_code == 200
        assert busy.post("/v1/reports/sr", json=body).status_code == 200  # free again
