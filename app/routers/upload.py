"""Search by an uploaded volume or patch."""

from __future__ import annotations

import base64
import logging
import tempfile
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile

from app.errors import SPACING_RANGE_MM, parse_triple
from app.preview import patch_preview_png
from app.routers.deps import RetrieverDep
from app.schemas import (
    COORDINATE_LIMIT_MM,
    K_LIMIT,
    Filters,
    Problem,
    SearchResponse,
    SizeEstimate,
)
from app.uploads import UploadParser
from model.uploads import UploadJob, mask_kind, upload_kind

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/search", tags=["search"])
UPLOAD_PATH = "/v1/search/upload"


@router.post(
    "/upload",
    response_model=SearchResponse,
    responses={
        413: {"model": Problem},
        415: {"model": Problem},
        422: {"model": Problem},
        503: {"model": Problem, "description": "every upload parser is busy (Retry-After)"},
    },
)
def search_upload(
    request: Request,
    retriever: RetrieverDep,
    file: Annotated[
        UploadFile, File(description=".npy/.npz, .nii(.gz), .mha, or .zip (DICOM or .mhd+.raw)")
    ],
    center_xyz: Annotated[
        str | None, Form(description="x,y,z world mm (LPS); default: volume centre")
    ] = None,
    spacing_zyx: Annotated[str | None, Form(description="z,y,x mm; required for arrays")] = None,
    series_uid: Annotated[
        str | None,
        Form(description="which series of a zip holding several DICOM series", max_length=128),
    ] = None,
    k: Annotated[int, Form(ge=1, le=K_LIMIT)] = 5,
    exclude_patient_id: Annotated[str | None, Form(max_length=128)] = None,
    labelled_only: Annotated[bool, Form()] = False,
    preview: Annotated[
        bool, Form(description="also return the query patch's slices (query.preview_png_base64)")
    ] = False,
    mask: Annotated[
        UploadFile | None,
        File(
            description="a nodule mask on the uploaded CT (.nii, .nii.gz, .mha or a DICOM SEG "
            ".dcm; any grid): its centroid is the centre (no center_xyz), its voxels the size"
        ),
    ] = None,
    estimate_size: Annotated[
        bool,
        Form(description="without a mask: estimate the size by region growing from the point"),
    ] = False,
) -> SearchResponse:
    """Similar nodules to the one at ``center_xyz`` (or the mask's centroid) in an upload."""
    kind = upload_kind(file.filename or "")
    # A form whose mask field was left empty sends a part with no file name.
    kind_of_mask = mask_kind(mask.filename) if mask is not None and mask.filename else None
    center = parse_triple(center_xyz, "center_xyz", limit=COORDINATE_LIMIT_MM)
    spacing = parse_triple(
        spacing_zyx, "spacing_zyx", low=SPACING_RANGE_MM[0], limit=SPACING_RANGE_MM[1]
    )
    parser: UploadParser = request.state.parser
    with tempfile.TemporaryDirectory(prefix="nodule-upload-") as tmp:
        path, size = _save(file, Path(tmp), "upload")
        mask_path = None
        if mask is not None and kind_of_mask is not None:
            mask_path, mask_size = _save(mask, Path(tmp), "mask")
            size += mask_size
        job = UploadJob(
            path=path,
            kind=kind,
            spec=retriever.embedder.card.preprocessing,
            center_xyz=_triple(center),
            spacing_zyx=_triple(spacing),
            workdir=Path(tmp),
            series_uid=series_uid or None,
            mask_path=mask_path,
            mask_kind=kind_of_mask,
            estimate_size=estimate_size,
        )
        cut = parser.parse(job)
    vector = retriever.embedder.embed_patches(cut.patch[None])[0]
    filters = Filters(exclude_patient_id=exclude_patient_id, labelled_only=labelled_only)
    query: dict[str, Any] = {"center_xyz": cut.center_xyz, "index_zyx": cut.index_zyx}
    if preview:
        query["preview_png_base64"] = base64.b64encode(patch_preview_png(cut.patch)).decode()
    found = None
    if cut.size is not None and cut.size_method is not None:
        found = SizeEstimate.of(cut.size, cut.size_method)
    response = retriever.respond(vector, k, filters, query, size_estimate=found)
    logger.info(
        "upload search (%s%s, %.1f MB): %d neighbours, %d labelled",
        kind,
        f" with a {kind_of_mask} mask" if kind_of_mask else "",
        size / 1e6,
        len(response.neighbors),
        response.vote.n_labelled,
    )
    return response


def _save(file: UploadFile, folder: Path, stem: str) -> tuple[Path, int]:
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
