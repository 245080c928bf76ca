"""The estimated mask as a DICOM SEG (model.clinical.seg): it round-trips, and the SR references
it."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from model.clinical.measure import NoduleRegion, grow_at
from model.clinical.report import SearchOutcome, build_report
from model.clinical.seg import SEGMENT_NUMBER, mask_segmentation
from model.clinical.sr import SimilarCase
from model.ct.dicom import DicomSeriesSource
from model.nn.embedder import Embedder
from tests.helpers.data import RealSeries
from tests.helpers.dicom import SEGMENTATION_STORAGE, content_items
from tests.helpers.synthetic import annotated_centers, growable_nodule


def _read_back(source: DicomSeriesSource, region: NoduleRegion, encoded: bytes) -> np.ndarray:
    """The SEG's segment on the slices the region covers, (z, rows, columns)."""
    seg = hd.seg.segread(io.BytesIO(encoded))
    z0 = region.start_zyx[0]
    headers = source.slice_headers(z0, z0 + region.mask_zyx.shape[0])
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[str(h.SOPInstanceUID) for h in headers],
        segment_numbers=[SEGMENT_NUMBER],
        assert_missing_frames_are_empty=True,
    )
    return np.asarray(pixels[..., 0])


def _assert_round_trip(source: DicomSeriesSource, center: tuple[float, float, float]) -> bytes:
    region = grow_at(source, center)
    assert region is not None
    seg = mask_segmentation(source, region, "test")
    buffer = io.BytesIO()
    seg.save_as(buffer, enforce_file_format=True)
    assert seg.SOPClassUID == SEGMENTATION_STORAGE
    back = _read_back(source, region, buffer.getvalue())
    _, y0, x0 = region.start_zyx
    _, height, width = region.mask_zyx.shape
    np.testing.assert_array_equal(back[:, y0 : y0 + height, x0 : x0 + width], region.mask_zyx)
    assert int(back.sum()) == int(region.mask_zyx.sum())  # nothing outside the box
    assert seg.StudyInstanceUID == source.slice_headers(0, 1)[0].StudyInstanceUID
    # A colour of its own: viewers (OHIF) otherwise warn and pick one.
    assert len(seg.SegmentSequence[0].RecommendedDisplayCIELabValue) == 3
    return buffer.getvalue()


def test_the_seg_round_trips_on_a_synthetic_series(synth_set: Path) -> None:
    source, center = growable_nodule(synth_set)
    _assert_round_trip(source, center)


@pytest.mark.slow  # real CT: make test, not make test-fast
def test_the_seg_round_trips_on_a_real_lidc_series(
    real_series: RealSeries, shared_data: Path
) -> None:
    """LIDC-IDRI-0003's 8.8 mm nodule (LUNA16 annotation), grown and written on the real headers."""
    source = DicomSeriesSource(real_series["LIDC-IDRI-0003"])
    centers = annotated_centers(shared_data / "luna16/annotations.csv", source.series_uid)
    _assert_round_trip(source, centers[1])


def test_the_sr_references_the_segs_segment(synth_set: Path, app_model: Path) -> None:
    source, center = growable_nodule(synth_set)
    outcome = SearchOutcome([SimilarCase(3, 0.9, 4.0)], 0.7, 1)
    files = build_report(
        source, center, outcome, Embedder.from_model_dir(app_model, "cpu"), "v1", with_seg=True
    )
    assert files.seg is not None
    sr = pydicom.dcmread(io.BytesIO(files.sr))
    seg = pydicom.dcmread(io.BytesIO(files.seg))
    referenced = [
        item.ReferencedSOPSequence[0]
        for item in content_items(sr.ContentSequence)
        if item.ValueType == "IMAGE" and "ReferencedSegmentNumber" in item.ReferencedSOPSequence[0]
    ]
    assert [(r.ReferencedSOPInstanceUID, r.ReferencedSegmentNumber) for r in referenced] == [
        (seg.SOPInstanceUID, SEGMENT_NUMBER)
    ]
    evidence = {
        str(instance.ReferencedSOPInstanceUID)
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for instance in series.ReferencedSOPSequence
    }
    assert seg.SOPInstanceUID in evidence
    without = build_report(source, center, outcome, Embedder.from_model_dir(app_model, "cpu"), "v1")
    assert without.seg is None


def test_dciodvfy_finds_no_error_in_the_seg(synth_set: Path, tmp_path: Path) -> None:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian dicom3tools) is not installed; make system-deps installs it")
    source, center = growable_nodule(synth_set)
    path = tmp_path / "seg.dcm"
    path.write_bytes(_assert_round_trip(source, center))
    checked = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    errors = [line for line in (checked.stdout + checked.stderr).splitlines() if "Error" in line]
    assert not errors, "\n".join(errors)


def test_a_network_mask_is_named_as_such_in_the_sr_and_the_seg(
    synth_set: Path, seg_model: Path
) -> None:
    """A clinical object never calls the network's mask region growing."""
    source, center = growable_nodule(synth_set)
    outcome = SearchOutcome([SimilarCase(3, 0.9, 4.0)], 0.7, 1)
    embedder = Embedder.from_model_dir(seg_model, "cpu")
    files = build_report(source, center, outcome, embedder, "v1", with_seg=True)
    assert files.seg is not None
    seg = pydicom.dcmread(io.BytesIO(files.seg))
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "nodule-search network mask"
    assert "network mask" in seg.ContentDescription
    sr = pydicom.dcmread(io.BytesIO(files.sr))
    methods = {
        str(m.ConceptCodeSequence[0].CodeValue)
        for item in content_items(sr.ContentSequence)
        if item.ValueType == "NUM"
        for m in item.get("ContentSequence", [])
        if m.ConceptNameCodeSequence[0].CodeValue == "370129005"  # Measurement Method
    }
    assert methods == {"SIM016"}
