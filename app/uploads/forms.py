"""The upload forms of both upload routes: their fields, and receiving one into the parser.

``receive_upload`` checks the form, saves its files to a temporary folder and hands them to the
parser process (``app.uploads.parser``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from fastapi import File, Form, UploadFile

from app.errors import SPACING_RANGE_MM, parse_triple
from app.problems import Problem
from app.schemas import COORDINATE_LIMIT_MM
from app.uploads.parse import UnsupportedUploadError, UploadJob, UploadPatch, mask_kind, upload_kind
from app.uploads.parser import UploadParser
from model.preprocessing import PatchSpec

#: The error answers of both upload routes, for their OpenAPI documents.
UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": Problem},
    415: {"model": Problem},
    422: {"model": Problem},
    503: {"model": Problem, "description": "every upload parser is busy (Retry-After)"},
}

#: Form fields both upload routes take (``/v1/search/upload``, ``/v1/reports/sr/upload``).
SeriesUidField = Annotated[
    str | None,
    Form(description="which series of a zip holding several DICOM series", max_length=128),
]
KField = Annotated[int, Form(ge=1, description="neighbours (at most NODULE_MAX_K)")]
ExcludePatientField = Annotated[
    str | None, Form(max_length=128, description="drop this patient's nodules")
]
LabelledOnlyField = Annotated[
    bool, Form(description="only neighbours with a benign/malignant label")
]
MaskField = Annotated[
    UploadFile | None,
    File(
        description="a nodule mask on the uploaded CT (.nii, .nii.gz, .mha or a DICOM SEG .dcm; "
        "any grid): its centroid is the centre (no center_xyz), its voxels the size"
    ),
]


@dataclass
class UploadForm:
    """The fields of an upload form (``/v1/search/upload``, ``/v1/reports/sr/upload``)."""

    file: UploadFile
    mask: UploadFile | None = None
    center_xyz: str | None = None
    spacing_zyx: str | None = None
    series_uid: str | None = None
    estimate_size: bool = False
    report: bool = False


@dataclass(frozen=True)
class ReceivedUpload:
    """A parsed upload: the parser's answer, what was sent (for the log) and its size."""

    patch: UploadPatch
    what: str
    n_bytes: int


def receive_upload(
    parser: UploadParser, spec: PatchSpec, form: UploadForm, *, profile: bool = False
) -> ReceivedUpload:
    """Check the form, save its files to a temporary folder, parse them in the parser process.

    ``profile``: also cut the profile's HU grid (the model's vector has measured blocks).

    Raises:
        UnsupportedUploadError: a file type the service does not read (415).
        InputError / UploadContentError: a bad field or unusable content (422).
        SlotsBusyError: every parser is busy (503).
    """
    kind = upload_kind(form.file.filename or "")
    if form.report and kind != "zip":
        # Before any parsing: the parser's own message would name fields this form lacks.
        raise UnsupportedUploadError(
            f"an SR belongs to a DICOM study: send a .zip of the DICOM CT series, not a {kind} file"
        )
    # A form whose mask field was left empty sends a part with no file name.
    mask = form.mask if form.mask is not None and form.mask.filename else None
    kind_of_mask = mask_kind(mask.filename or "") if mask is not None else None
    center = parse_triple(form.center_xyz, "center_xyz", limit=COORDINATE_LIMIT_MM)
    spacing = parse_triple(
        form.spacing_zyx, "spacing_zyx", low=SPACING_RANGE_MM[0], limit=SPACING_RANGE_MM[1]
    )
    with tempfile.TemporaryDirectory(prefix="nodule-upload-") as tmp:
        path, size = save_file(form.file, Path(tmp), "upload")
        mask_path = None
        if mask is not None:
            mask_path, mask_size = save_file(mask, Path(tmp), "mask")
            size += mask_size
        job = UploadJob(
            path=path,
            kind=kind,
            spec=spec,
            center_xyz=_triple(center),
            spacing_zyx=_triple(spacing),
            workdir=Path(tmp),
            series_uid=form.series_uid or None,
            mask_path=mask_path,
            mask_kind=kind_of_mask,
            estimate_size=form.estimate_size,
            report=form.report,
            profile=profile,
        )
        patch = parser.parse(job)
    what = kind + (f" with a {kind_of_mask} mask" if kind_of_mask else "")
    return ReceivedUpload(patch, what, size)


def save_file(file: UploadFile, folder: Path, stem: str) -> tuple[Path, int]:
    """Stream an uploaded file into ``folder``; its path and size in bytes.

    Only the suffix of the client's name is kept: nothing else of it reaches a path.
    """
    name = PurePosixPath(file.filename or stem).name
    suffix = ".nii.gz" if name.lower().endswith(".nii.gz") else PurePosixPath(name).suffix.lower()
    path = folder / f"{stem}{suffix}"
    size = 0
    with path.open("wb") as out:
        while chunk := file.file.read(1 << 20):
            out.write(chunk)
            size += len(chunk)
    return path, size


def _triple(values: list[float] | None) -> tuple[float, float, float] | None:
    return None if values is None else (values[0], values[1], values[2])
