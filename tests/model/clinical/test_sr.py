"""The DICOM SR of a search (model.clinical.sr): readable, TID 1500's codes, the queried study's
own."""

from __future__ import annotations

import dataclasses
import io
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from model.clinical.measure import NoduleMeasurement, ruler_measurement
from model.clinical.sr import (
    DISCLAIMER,
    SearchFindings,
    SimilarCase,
    SlicePoint,
    search_report,
    slice_point,
    state_text,
)
from model.clinical.vote import match_state
from model.ct.dicom import DicomSeriesSource

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


def _titles(items: list[Dataset]) -> list[str]:
    """The neighbour groups' and the vote group's titles (similar case N: ..., the vote)."""
    titled = {("99NODSRCH", "SIM018"), ("99NODSRCH", "SIM019")}
    return [str(i.TextValue) for i in items if i.ValueType == "TEXT" and _code(i) in titled]


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
    titles = _titles(items)
    assert "similar case 1: catalogue nodule 7" in titles
    assert any(getattr(i, "TextValue", "") == DISCLAIMER for i in items)
    vote = next(i for i in items if _code(i) == ("99NODSRCH", "SIM004"))
    assert vote.ConceptCodeSequence[0].CodeValue == "21594007"  # SCT malignant


def test_every_group_is_the_query_nodules_and_it_is_on_its_slice(evidence: list[Dataset]) -> None:
    """OHIF merges groups by tracking UID and draws each merged finding at its first SCOORD: one
    tracking UID for all, the image point first, on the slice the point lies in (issue 30)."""
    slice_header = evidence[2]
    on_slice = SlicePoint(
        str(slice_header.SOPClassUID), str(slice_header.SOPInstanceUID), (101.5, 77.5)
    )
    findings = dataclasses.replace(_findings(evidence), on_slice=on_slice)
    items = list(_items(search_report(evidence, findings).ContentSequence))
    groups = [i for i in items if _code(i) == ("DCM", "125007")]
    assert len(groups) == 2 + len(findings.neighbors) + 1  # the point twice, neighbours, vote
    uids = {
        str(item.UID)
        for group in groups
        for item in group.ContentSequence
        if _code(item) == ("DCM", "112040")  # tracking unique identifier
    }
    assert len(uids) == 1
    regions = [i for i in items if _code(i) == ("DCM", "111030")]
    assert [r.ValueType for r in regions] == ["SCOORD", "SCOORD3D"]
    point = regions[0]
    assert point.GraphicType == "POINT"
    assert [float(v) for v in point.GraphicData] == [101.5, 77.5]
    cited = point.ContentSequence[0].ReferencedSOPSequence[0]
    assert cited.ReferencedSOPInstanceUID == slice_header.SOPInstanceUID
    assert cited.ReferencedSOPClassUID == slice_header.SOPClassUID


def test_the_slice_point_is_the_nearest_slice_and_its_pixel(synth_set: Path) -> None:
    folder = next((synth_set / "dicom").iterdir())
    source = DicomSeriesSource(folder)
    geometry = source.geometry
    index_zyx = np.array([7.3, 40.2, 61.9])  # continuous; slice 7 is the nearest
    center = tuple(float(v) for v in geometry.index_zyx_to_world(index_zyx))
    found = slice_point(source, (center[0], center[1], center[2]))
    assert found is not None
    header = source.slice_headers(7, 8)[0]
    assert found.sop_instance_uid == header.SOPInstanceUID
    assert found.column_row == pytest.approx((61.9 + 0.5, 40.2 + 0.5))
    outside = tuple(float(v) for v in geometry.index_zyx_to_world(np.array([-5.0, 1.0, 1.0])))
    assert slice_point(source, (outside[0], outside[1], outside[2])) is None


def test_an_sr_needs_dicom_evidence() -> None:
    with pytest.raises(ValueError, match="DICOM"):
        search_report([], SearchFindings((0.0, 0.0, 0.0), "1.2.3", [], None, None, None, "f", "v"))


VOTE_CONCEPTS = {("99NODSRCH", "SIM003"), ("99NODSRCH", "SIM004")}  # the share, the verdict


def _with_state(evidence: list[Dataset], best: float, threshold: float) -> SearchFindings:
    found = _findings(evidence)
    state = match_state(best, threshold)
    neighbors = [
        SimilarCase(c.nodule_id, c.similarity, c.mean_rating, state.weak(c.similarity))
        for c in found.neighbors
    ]
    return dataclasses.replace(found, neighbors=neighbors, match=state)


def _numbers(items: list[Dataset]) -> dict[tuple[str, str], float]:
    return {
        _code(i): float(i.MeasuredValueSequence[0].NumericValue)
        for i in items
        if i.ValueType == "NUM"
    }


def test_a_withheld_vote_is_not_in_the_sr(evidence: list[Dataset]) -> None:
    """No close match: no vote concept at all, the state in words, the numbers it rests on."""
    findings = _with_state(evidence, best=0.931, threshold=0.95)
    assert findings.match.withheld
    items = list(_items(search_report(evidence, findings).ContentSequence))
    assert not VOTE_CONCEPTS & {_code(i) for i in items}
    texts = [str(getattr(i, "TextValue", "")) for i in items]
    assert state_text(findings.match) in texts
    assert any("No close match" in t and "withheld" in t for t in texts)
    numbers = _numbers(items)
    assert numbers[("99NODSRCH", "SIM010")] == pytest.approx(0.931)  # best similarity
    assert numbers[("99NODSRCH", "SIM011")] == pytest.approx(0.95)  # the threshold
    close = next(i for i in items if _code(i) == ("99NODSRCH", "SIM012"))
    assert close.ConceptCodeSequence[0].CodeValue == "373067005"  # SCT No
    titles = _titles(items)
    assert "similar case 1: catalogue nodule 7 (weak match)" in titles
    assert any(t.startswith("similar-case vote withheld") for t in titles)


def test_a_close_match_sr_carries_the_vote_and_the_thresholds(evidence: list[Dataset]) -> None:
    findings = _with_state(evidence, best=0.931, threshold=0.9)
    items = list(_items(search_report(evidence, findings).ContentSequence))
    assert {_code(i) for i in items} >= VOTE_CONCEPTS
    numbers = _numbers(items)
    assert numbers[("99NODSRCH", "SIM003")] == pytest.approx(0.62)
    assert numbers[("99NODSRCH", "SIM011")] == pytest.approx(0.9)
    close = next(i for i in items if _code(i) == ("99NODSRCH", "SIM012"))
    assert close.ConceptCodeSequence[0].CodeValue == "373066001"  # SCT Yes
    weak = [
        i.ConceptCodeSequence[0].CodeValue for i in items if _code(i) == ("99NODSRCH", "SIM008")
    ]
    assert weak == ["373067005", "373066001"]  # 0.931 is not a weak match, 0.874 is


def test_a_ruler_measurement_is_the_users_in_the_sr(evidence: list[Dataset]) -> None:
    ruler = ruler_measurement(7.0, 12.4, "solid")
    findings = dataclasses.replace(_findings(evidence), measured=ruler)
    items = list(_items(search_report(evidence, findings).ContentSequence))
    by_user = [
        i
        for i in items
        if i.ValueType == "NUM"
        and "ContentSequence" in i
        and any(
            _code(m) == ("SCT", "370129005") and m.ConceptCodeSequence[0].CodeValue == "SIM013"
            for m in i.ContentSequence
        )
    ]
    measured = {_code(i): float(i.MeasuredValueSequence[0].NumericValue) for i in by_user}
    assert measured == {
        ("SCT", "103339001"): 12.4,  # long axis
        ("SCT", "103340004"): 7.0,  # short axis
        ("SCT", "81827009"): 9.7,  # mean diameter
    }
    category = next(i for i in items if _code(i) == ("99NODSRCH", "SIM015"))
    assert category.ConceptCodeSequence[0].CodeMeaning == "4A"  # solid, 8 to < 15 mm


def test_dciodvfy_finds_no_error(evidence: list[Dataset], tmp_path: Path) -> None:
    """dicom3tools' IOD validator (make test installs it): warnings only, never an error."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian dicom3tools) is not installed; make system-deps installs it")
    path = tmp_path / "sr.dcm"
    on_slice = SlicePoint(
        str(evidence[3].SOPClassUID), str(evidence[3].SOPInstanceUID), (9.5, 20.5)
    )
    findings = dataclasses.replace(
        _with_state(evidence, best=0.931, threshold=0.95),
        measured=ruler_measurement(7.0, 12.4, None),
        on_slice=on_slice,
    )
    search_report(evidence, findings).save_as(path, enforce_file_format=True)
    checked = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (checked.stdout + checked.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    assert not errors, "\n".join(errors)
    # What it may warn about: our private coding scheme (declared in the SR) and the synthetic
    # study's empty StudyID/StudyTime.
