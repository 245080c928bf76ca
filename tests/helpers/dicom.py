"""Reading DICOM objects back in tests: SR content items, multipart answers, referenced slices."""

from __future__ import annotations

import pydicom

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


def content_items(items: pydicom.Sequence) -> list[pydicom.Dataset]:
    out = []
    for item in items:
        out.append(item)
        if "ContentSequence" in item:
            out += content_items(item.ContentSequence)
    return out


def multipart_parts(answer_content: bytes, content_type: str) -> list[bytes]:
    """The bodies of a multipart/related answer."""
    boundary = content_type.split("boundary=")[1].encode()
    chunks = answer_content.split(b"--" + boundary)[1:-1]
    return [c.split(b"\r\n\r\n", 1)[1][: -len(b"\r\n")] for c in chunks]


def referenced_instances(sr: pydicom.Dataset) -> set[str]:
    return {
        str(instance.ReferencedSOPInstanceUID)
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for instance in series.ReferencedSOPSequence
    }
