"""Stored CTs by series UID under NODULE_DATA_DIR; opened sources kept; UIDs hashed in logs."""

from __future__ import annotations

import csv
import logging
import os
import shutil
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.privacy import UidHasher
from app.scans import OpenSources
from app.series import SeriesLocator
from app.settings import AppSettings
from tests.helpers.data import RealSeries


def _synthetic_dicom(synth_set: Path) -> tuple[str, Path]:
    folder = next(p for p in sorted((synth_set / "dicom").iterdir()) if p.is_dir())
    return folder.name, folder


def test_dicom_series_found_by_header_in_any_layout(synth_set: Path, tmp_path: Path) -> None:
    uid, folder = _synthetic_dicom(synth_set)
    nested = tmp_path / "root" / "PAT01" / "STUDY1" / "SE0003"
    shutil.copytree(folder, nested)
    (tmp_path / "root" / "notes.txt").write_text("not DICOM")
    (tmp_path / "root" / "PAT01" / "junk.bin").write_bytes(b"\x00" * 300)
    locator = SeriesLocator(tmp_path / "root", rescan_interval_s=3600)
    assert locator.find(uid) == nested
    assert locator.find("1.2.3.4") is None


def test_files_named_by_uid_and_luna_subsets(synth_set: Path) -> None:
    locator = SeriesLocator(synth_set)
    mhd = next(iter(sorted(synth_set.glob("subset*/*.mhd"))))
    assert locator.find(mhd.stem) == mhd
    uid, folder = _synthetic_dicom(synth_set)
    assert SeriesLocator(synth_set / "dicom").find(uid) == folder  # a folder named by its UID


@pytest.mark.parametrize("uid", ["../subset0", "/etc/passwd", ".hidden", "a/b", "", "x" * 200])
def test_names_that_could_leave_the_root_are_never_looked_up(synth_set: Path, uid: str) -> None:
    assert SeriesLocator(synth_set).find(uid) is None


def test_a_miss_rescans_only_after_the_interval(synth_set: Path, tmp_path: Path) -> None:
    uid, folder = _synthetic_dicom(synth_set)
    root = tmp_path / "root"
    root.mkdir()
    patient = root / "p"  # not named by UID: only the header lookup finds it
    cached = SeriesLocator(root, rescan_interval_s=3600)
    eager = SeriesLocator(root, rescan_interval_s=0)
    assert cached.find(uid) is None
    assert eager.find(uid) is None
    shutil.copytree(folder, patient / "s")
    assert cached.find(uid) is None  # the last walk is recent: no new walk per unknown UID
    assert eager.find(uid) == patient / "s"


def test_opened_sources_are_reused_until_the_file_changes(synth_set: Path, tmp_path: Path) -> None:
    mhd = next(iter(sorted(synth_set.glob("subset*/*.mhd"))))
    copy = tmp_path / mhd.name
    shutil.copy(mhd, copy)
    shutil.copy(mhd.with_suffix(".raw"), copy.with_suffix(".raw"))
    sources = OpenSources(capacity=2)
    first = sources.open(copy, None)
    assert sources.open(copy, None) is first
    stat = copy.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert sources.open(copy, None) is not first
    assert OpenSources(capacity=0).open(copy, None) is not OpenSources(capacity=0).open(copy, None)


def test_uid_hash_is_keyed_and_stable() -> None:
    uid = "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192"
    first, second, other = UidHasher(b"k1"), UidHasher(b"k1"), UidHasher(b"k2")
    assert first(uid) == second(uid) != other(uid)
    assert uid not in first(uid)
    assert first(uid).startswith("uid:")
    assert len(first(uid)) == len("uid:") + 16
    assert first(None) == "-"


def test_coordinate_query_logs_the_series_only_as_a_keyed_hash(
    client: TestClient, synth_set: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mhd = next(iter(sorted(synth_set.glob("subset*/*.mhd"))))
    with (synth_set / "annotations.csv").open() as f:
        row = next(r for r in csv.DictReader(f) if r["seriesuid"] == mhd.stem)
    center = [float(row[k]) for k in ("coordX", "coordY", "coordZ")]
    with caplog.at_level(logging.DEBUG):
        ok = client.post(
            "/v1/search/coordinate", json={"series_uid": mhd.stem, "center_xyz": center}
        )
        missing = client.post(
            "/v1/search/coordinate", json={"series_uid": "1.2.3.999", "center_xyz": center}
        )
    assert ok.status_code == 200, ok.text
    assert missing.status_code == 404
    assert "1.2.3.999" in missing.json()["detail"]  # the caller may see what it sent
    assert mhd.stem not in caplog.text
    assert "1.2.3.999" not in caplog.text
    assert "coordinate search on series uid:" in caplog.text


def test_real_dicom_series_in_a_pacs_like_tree_is_searchable_by_uid(
    app_index: Path,
    real_series: RealSeries,
    shared_data: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """LIDC-IDRI-0001, not in the catalogue, stored as patient/study/series folders."""
    folder = real_series["LIDC-IDRI-0001"]
    first = pydicom.dcmread(next(iter(sorted(folder.glob("*.dcm")))), stop_before_pixels=True)
    series_uid, study_uid = str(first.SeriesInstanceUID), str(first.StudyInstanceUID)
    root = tmp_path / "store"
    target = root / "patient-a" / "study-1" / "series-3000566"
    target.parent.mkdir(parents=True)
    target.symlink_to(folder, target_is_directory=True)
    with (shared_data / "luna16/annotations.csv").open() as f:
        row = next(r for r in csv.DictReader(f) if r["seriesuid"] == series_uid)
    center = [float(row[k]) for k in ("coordX", "coordY", "coordZ")]
    settings = AppSettings(index_dir=app_index, data_dir=root, device="cpu")
    with caplog.at_level(logging.DEBUG), TestClient(create_app(settings)) as client:
        response = client.post(
            "/v1/search/coordinate", json={"series_uid": series_uid, "center_xyz": center, "k": 3}
        )
    assert response.status_code == 200, response.text
    assert len(response.json()["neighbors"]) == 3
    for secret in (series_uid, study_uid, "LIDC-IDRI-0001", str(first.PatientID)):
        assert secret not in caplog.text
