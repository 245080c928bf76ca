"""The DICOM SR of a search (model.sr): readable, TID 1500's codes, the queried study's own."""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from model.measure import NoduleMeasurement
from model.sr import DISCLAIMER, SearchFindings, SimilarCase, search_report

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"


def _items(items: Iterator[Dataset] | list[Dataset]) -> Iterator[Dataset]:
    """Every content item of a tree, depth first."""
    for item in items:
        yield item
        if "ContentSequence" in item:
            yield from _items(item.ContentSequence)


def _code(item: Dataset) -> tuple[str, str]:
    name = item.ConceptNameCodeSequence[0]
    return str(name.CodingSchemeDesignator), str(name.CodeValue)


@pytest.fixture
def evidence(synth_set: Path) -> list[Dataset]:
    folder = next((synth_set / "dicom").iterdir())
    return [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(folder.iterdir())[:6]]


def _findings(evidence: list[Dataset]) -> SearchFindings:
    return SearchFindings(
        center_xyz=(12.5, -40.25, -100.0),
        frame_of_reference_uid=str(evidence[0].FrameOfReferenceUID),
        neighbors=[SimilarCase(7, 0.931, 3.5), SimilarCase(11, 0.874, None)],
        malignant_probability=0.62,
        vote_binary=1,
        size=NoduleMeasurement(10.2, 8.2, 9.2, 401.5, 512, 3, "solid", 0.81, "4A"),
        model_fingerprint="0123456789abcdef",
        index_version="20261203T000000000000Z-abcdef",
    )


def test_the_sr_reads_back_and_belongs_to_the_queried_study(evidence: list[Dataset]) -> None:
    buffer = io.BytesIO()
    search_report(evidence, _findings(evidence)).save_as(buffer)
    buffer.seek(0)
    sr = pydicom.dcmread(buffer)
    assert sr.SOPClassUID == COMPREHENSIVE_3D_SR
    assert sr.StudyInstanceUID == evidence[0].StudyInstanceUID
    assert sr.PatientID == evidence[0].PatientID
    assert sr.SeriesInstanceUID != evidence[0].SeriesInstanceUID  # a series of its own
    referenced = {
        str(ref.ReferencedSOPInstanceUID)
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence
    }
    assert referenced == {str(h.SOPInstanceUID) for h in evidence}


def test_the_content_tree_carries_tid_1500s_codes(evidence: list[Dataset]) -> None:
    findings = _findings(evidence)
    sr = search_report(evidence, findings)
    assert (sr.ConceptNameCodeSequence[0].CodeValue, sr.ValueType) == ("126000", "CONTAINER")
    items = list(_items(sr.ContentSequence))
    codes = [_code(i) for i in items]
    assert ("DCM", "121058") in codes  # procedure reported
    assert ("DCM", "126010") in codes  # imaging measurements
    groups = [i for i in items if _code(i) == ("DCM", "125007")]
    assert len(groups) == 1 + len(findings.neighbors) + 1  # query, each neighbour, the vote
    region = next(i for i in items if _code(i) == ("DCM", "111030"))
    assert region.ValueType == "SCOORD3D"
    assert region.GraphicType == "POINT"
    assert [float(v) for v in region.GraphicData] == list(findings.center_xyz)
    assert region.ReferencedFrameOfReferenceUID == evidence[0].FrameOfReferenceUID
    diameter = next(i for i in items if _code(i) == ("SCT", "81827009"))
    assert float(diameter.MeasuredValueSequence[0].NumericValue) == 9.2
    tracking = [str(i.TextValue) for i in items if _code(i) == ("DCM", "112039")]
    assert "similar case 1: catalogue nodule 7" in tracking
    assert any(getattr(i, "TextValue", "") == DISCLAIMER for i in items)
    vote = next(i for i in items if _code(i) == ("99NODSRCH", "SIM004"))
    assert vote.ConceptCodeSequence[0].CodeValue == "21594007"  # SCT malignant


def test_an_sr_needs_dicom_evidence() -> None:
    with pytest.raises(ValueError, match="DICOM"):
        search_report([], SearchFindings((0.0, 0.0, 0.0), "1.2.3", [], None, None, None, "f", "v"))


def test_dciodvfy_finds_no_error(evidence: list[Dataset], tmp_path: Path) -> None:
    """dicom3tools' IOD validator (make test installs it): warnings only, never an error."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian dicom3tools) is not installed; make system-deps installs it")
    path = tmp_path / "sr.dcm"
    search_report(evidence, _findings(evidence)).save_as(path, enforce_file_format=True)
    checked = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (checked.stdout + checked.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    assert not errors, "\n".join(errors)
    # What it may warn about: our private coding scheme (declared in the SR) and the synthetic
    # study's empty StudyID/StudyTime.
