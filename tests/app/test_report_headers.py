"""Reports refuse headers that would make an SR of the wrong patient or a non-conformant one.

Every case of issue 27 item 1 and 6 that reaches the report assembly, built from the project's
synthetic DICOM series with one attribute changed on every slice: a 422 naming the attribute,
never a 500, never the value.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from model.ct.dicom import evidence_header
from model.ct.evidence import ReportHeaderError, check_evidence
from tests.helpers.synthetic import growable_nodule

Edit = Callable[[Dataset, int], None]


def _drop(keyword: str) -> Edit:
    return lambda ds, _: delattr(ds, keyword)


def _set(keyword: str, value: object) -> Edit:
    return lambda ds, _: setattr(ds, keyword, value)


def _new_study_per_slice(ds: Dataset, _: int) -> None:
    ds.StudyInstanceUID = generate_uid()


def _two_patients(ds: Dataset, i: int) -> None:
    ds.PatientID = f"PATIENT-{i % 2}"


CASES: dict[str, tuple[Edit, str]] = {
    "no frame of reference": (_drop("FrameOfReferenceUID"), "FrameOfReferenceUID"),
    "no study": (_drop("StudyInstanceUID"), "StudyInstanceUID"),
    "no SOP instance": (_drop("SOPInstanceUID"), "SOPInstanceUID"),
    "no SOP class": (_drop("SOPClassUID"), "SOPClassUID"),
    "a study per slice": (_new_study_per_slice, "StudyInstanceUID"),
    "two patients": (_two_patients, "PatientID"),
    "an unknown character set": (_set("SpecificCharacterSet", "ISO_IR 999"), "SpecificCharacter"),
    "a malformed birth date": (_set("PatientBirthDate", "1950-07-14"), "PatientBirthDate"),
    "a 10,000-character patient id": (_set("PatientID", "P" * 10_000), "PatientID"),
    "a non-UID SOP instance": (_set("SOPInstanceUID", "x" * 90), "SOPInstanceUID"),
}


def _edited_zip(folder: Path, edit: Edit) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid values we write
        for i, path in enumerate(sorted(folder.iterdir())):
            ds = pydicom.dcmread(path)
            edit(ds, i)
            if "SOPInstanceUID" in ds and "MediaStorageSOPInstanceUID" in ds.file_meta:
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=False)
            archive.writestr(path.name, out.getvalue())
    return buffer.getvalue()


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_sr_upload_with_a_bad_header_is_a_422_naming_it(
    client: TestClient, synth_set: Path, case: str
) -> None:
    edit, attribute = CASES[case]
    source, center = growable_nodule(synth_set)
    form = {"center_xyz": ",".join(str(v) for v in center), "k": "3", "seg": "true"}
    answer = client.post(
        "/v1/reports/sr/upload",
        files={"file": ("series.zip", _edited_zip(source.folder, edit))},
        data=form,
    )
    assert 400 <= answer.status_code < 500, (case, answer.status_code, answer.text)
    detail = answer.json()["detail"]
    assert attribute in detail, (case, detail)
    assert "P" * 100 not in detail  # no value echoed
    assert "1950-07-14" not in detail


def _headers(synth_set: Path) -> list[Dataset]:
    source, _ = growable_nodule(synth_set)
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(source.folder.iterdir())]


@pytest.mark.parametrize("case", sorted(CASES))
def test_stored_series_headers_are_checked_alike(synth_set: Path, case: str) -> None:
    """The same check every report path passes (``model.clinical.report.assemble_report``)."""
    edit, attribute = CASES[case]
    headers = _headers(synth_set)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, ds in enumerate(headers):
            edit(ds, i)
    with pytest.raises(ReportHeaderError, match=attribute):
        check_evidence(headers)


def test_the_synthetic_series_itself_passes(synth_set: Path) -> None:
    check_evidence(_headers(synth_set))


def _bulky(ds: Dataset, _: int) -> None:
    """A megabyte of UC text and an OB nested in a sequence, on every slice (issue 27 item 3)."""
    ds.add_new(0x00080119, "UC", "x" * 1_000_000)  # Long Code Value
    item = Dataset()
    item.add_new(0x00091010, "OB", b"\0" * 200_000)
    ds.add_new(0x00081140, "SQ", [item])  # Referenced Image Sequence


def test_bulky_headers_never_reach_the_server(client: TestClient, synth_set: Path) -> None:
    """What a report does not copy stays in the parser: the SR is made, without them."""
    source, center = growable_nodule(synth_set)
    form = {"center_xyz": ",".join(str(v) for v in center), "k": "3"}
    answer = client.post(
        "/v1/reports/sr/upload",
        files={"file": ("series.zip", _edited_zip(source.folder, _bulky))},
        data=form,
    )
    assert answer.status_code == 200, answer.text
    sr = pydicom.dcmread(io.BytesIO(answer.content))
    assert "x" * 2000 not in str(sr)


def test_the_evidence_keeps_what_a_report_copies_and_bounds_the_rest(synth_set: Path) -> None:
    header = _headers(synth_set)[0]
    _bulky(header, 0)
    kept = evidence_header(header)
    assert "PatientID" in kept
    assert "StudyInstanceUID" in kept
    assert 0x00080119 not in kept  # the long text
    assert 0x00081140 not in kept  # the sequence
    header.PatientID = "P" * 5000
    with pytest.raises(ReportHeaderError, match="PatientID"):
        evidence_header(header)
