"""Whether the headers of a queried DICOM series can make a report: checked once, every path.

The SR and SEG copy the queried study's patient and study modules and reference its slices, so a
series that names two patients, two studies, two series or two frames of reference, a UID that is
not a UID, or a header value its VR does not allow (a 10,000-character PatientID, a birth date
"1950-07-14") would make a report for the wrong patient or one that is not conformant. Every
report path (stored series, PACS series, uploads, the command line) passes ``check_evidence``
before anything is built; its message names the attribute, never its value (values identify
patients and may be long).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydicom import config
from pydicom.charset import python_encoding
from pydicom.dataset import Dataset
from pydicom.valuerep import VALIDATORS, validate_value

#: Attributes every slice must carry, as valid UIDs, for a report to reference it.
REQUIRED_UIDS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "FrameOfReferenceUID",
)
#: What a report copies from the queried slices (the patient and study modules): checked against
#: their VRs. Other attributes are not copied, so a scanner's loosely written ones do not matter.
COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)
#: Everything a report copies or checks from a slice (kept, never dropped, from its headers).
EVIDENCE_KEYWORDS = frozenset((*COPIED, *REQUIRED_UIDS, "SpecificCharacterSet"))
#: Attributes that must be one value across the slices (a report is of one of each).
ONE_VALUE = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")
_ONE_OF = {
    "PatientID": "patient",
    "StudyInstanceUID": "study",
    "SeriesInstanceUID": "series",
    "FrameOfReferenceUID": "frame of reference",
}


def read_leniently() -> None:
    """Read DICOM values as they are, without pydicom's warnings (process-wide).

    pydicom warns about, and logs, every value its VR does not allow when a file is read: the
    log line quotes the value (a birth date, a patient id). The service and the upload parser
    read untrusted headers and check what they copy themselves (``check_evidence``), so they
    read without that validation. Called once by a process that serves or parses, not at import.
    """
    config.settings.reading_validation_mode = config.IGNORE


class ReportHeaderError(ValueError):
    """The queried series' headers cannot make a report; the message names the attribute."""


def check_evidence(evidence: Sequence[Dataset]) -> None:
    """Refuse headers that would make a report of several patients or a non-conformant one.

    Raises:
        ReportHeaderError: no headers; a required UID missing or not a UID; several patients,
            studies, series or frames of reference; a value its VR does not allow; an unknown
            character set.
    """
    if not evidence:
        raise ReportHeaderError("a report needs the headers of the queried CT series (DICOM)")
    for header in evidence:
        _check_one(header)
    for keyword in ONE_VALUE:
        values = {str(h.get(keyword, "")) for h in evidence}
        if len(values) > 1:
            raise ReportHeaderError(
                f"the queried slices name {len(values)} different {keyword} values: a report "
                f"is of one {_ONE_OF[keyword]}"
            )


def _check_one(header: Dataset) -> None:
    for keyword in REQUIRED_UIDS:
        if not str(header.get(keyword, "") or ""):
            raise ReportHeaderError(f"a queried slice has no {keyword}")
    charsets = header.get("SpecificCharacterSet", "") or ""
    for charset in [charsets] if isinstance(charsets, str) else list(charsets):
        if str(charset).strip() not in python_encoding:
            raise ReportHeaderError(
                "SpecificCharacterSet names a character set DICOM does not define"
            )
    for keyword in (*COPIED, *REQUIRED_UIDS):
        element = header.data_element(keyword) if keyword in header else None
        if element is None or element.VR not in VALIDATORS:
            continue
        values = element.value if element.VM > 1 else [element.value]
        for value in values:
            if value is None or value == "":
                continue
            try:
                validate_value(element.VR, str(value), config.RAISE)
            except (ValueError, TypeError):
                raise ReportHeaderError(
                    f"{keyword} of a queried slice is not a valid DICOM {element.VR} value"
                ) from None
