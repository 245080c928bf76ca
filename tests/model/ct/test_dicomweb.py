"""DICOMweb region reads against a real Orthanc holding the real LIDC-IDRI-0001 series."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model.ct.dicom import DicomSeriesSource
from model.ct.dicomweb import DicomwebSeriesSource, Pacs
from model.ct.pacs import PacsConfig, PacsUnavailableError, SeriesNotInPacsError
from model.ct.volume import F32Array
from model.preprocessing import DEFAULT_SPEC, extract_patch
from tests.helpers.orthanc import Orthanc

# Runs a real Orthanc (DICOMweb): make test, not test-fast.
pytestmark = pytest.mark.slow


def _pacs(orthanc: Orthanc, **options: object) -> Pacs:
    config = PacsConfig(
        url=orthanc.url,
        user=orthanc.user,
        password=orthanc.password,
        **options,  # type: ignore[arg-type]
    )
    return Pacs(config)


def _nodule_center(shared_data: Path, series_uid: str) -> tuple[float, float, float]:
    with (shared_data / "luna16/annotations.csv").open() as f:
        row = next(r for r in csv.DictReader(f) if r["seriesuid"] == series_uid)
    return (float(row["coordX"]), float(row["coordY"]), float(row["coordZ"]))


class _Recording(DicomwebSeriesSource):
    boxes: list[tuple[tuple[int, ...], tuple[int, ...]]]

    def read_box(self, start_zyx: Sequence[int], stop_zyx: Sequence[int]) -> F32Array:
        self.boxes.append((tuple(start_zyx), tuple(stop_zyx)))
        return super().read_box(start_zyx, stop_zyx)


def test_pacs_series_equals_the_files(
    orthanc: Orthanc, pacs_lidc: tuple[str, str, Path], shared_data: Path
) -> None:
    study, series, folder = pacs_lidc
    pacs = _pacs(orthanc)
    remote = _Recording(pacs, study, series)
    remote.boxes = []
    local = DicomSeriesSource(folder)
    assert remote.geometry == local.geometry
    center = _nodule_center(shared_data, series)
    before = pacs.requests
    patch = extract_patch(remote, center, DEFAULT_SPEC)
    np.testing.assert_array_equal(patch, extract_patch(local, center, DEFAULT_SPEC))
    # Only the slices of the patch's box were fetched: one frame request each.
    slices = sum(stop[0] - start[0] for start, stop in remote.boxes)
    assert pacs.requests - before == slices
    assert slices < remote.geometry.shape_zyx[0] / 2
    # The metadata is cached: a second query in the series costs frames only.
    before = pacs.requests
    again = DicomwebSeriesSource(pacs, study, series)
    assert pacs.requests == before
    assert again.geometry == local.geometry


def test_the_study_is_found_when_only_the_series_is_known(
    orthanc: Orthanc, pacs_lidc: tuple[str, str, Path]
) -> None:
    study, series, _ = pacs_lidc
    pacs = _pacs(orthanc)
    assert pacs.find_study(series) == study
    assert DicomwebSeriesSource(pacs, None, series).metadata.study_uid == study


def test_unknown_series_is_not_in_the_pacs(
    orthanc: Orthanc, pacs_lidc: tuple[str, str, Path]
) -> None:
    study, _, _ = pacs_lidc
    pacs = _pacs(orthanc)
    with pytest.raises(SeriesNotInPacsError, match="not in the PACS"):
        DicomwebSeriesSource(pacs, None, "1.2.3.4.5.6")
    with pytest.raises(SeriesNotInPacsError):
        DicomwebSeriesSource(pacs, study, "1.2.3.4.5.6")


def test_unreachable_pacs_and_bad_credentials(orthanc: Orthanc) -> None:
    closed = PacsConfig(url="http://127.0.0.1:9/dicom-web", timeout_s=2)
    with pytest.raises(PacsUnavailableError, match="cannot be reached"):
        Pacs(closed).find_study("1.2.3")
    wrong = PacsConfig(url=orthanc.url, user=orthanc.user, password="not-the-password")
    with pytest.raises(PacsUnavailableError, match="credentials") as caught:
        Pacs(wrong).find_study("1.2.3")
    assert "not-the-password" not in str(caught.value)
    assert "not-the-password" not in repr(wrong)


def test_geometry_missing_from_series_metadata_is_fetched_from_the_instances(
    orthanc: Orthanc, pacs_lidc: tuple[str, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some servers leave position/orientation out of series metadata; instances have them."""
    study, series, folder = pacs_lidc
    pacs = _pacs(orthanc)
    original = pacs.client.retrieve_series_metadata

    def stripped(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = original(*args, **kwargs)
        for item in items[:5]:  # five slices lose their geometry
            for tag in ("00200032", "00200037"):  # ImagePositionPatient, ImageOrientationPatient
                item.pop(tag, None)
        return items

    monkeypatch.setattr(pacs.client, "retrieve_series_metadata", stripped)
    source = DicomwebSeriesSource(pacs, study, series)
    assert source.geometry == DicomSeriesSource(folder).geometry
    assert pacs.requests == 1 + 5  # the series metadata, then one instance metadata per gap
