"""Search by an uploaded volume or patch."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from app.routers.deps import ParserDep, RetrieverDep
from app.schemas import (
    Filters,
    SearchResponse,
)
from app.uploads.forms import (
    UPLOAD_ERRORS,
    ExcludePatientField,
    KField,
    LabelledOnlyField,
    MaskField,
    SeriesUidField,
    UploadForm,
    receive_upload,
)

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/search", tags=["search"])
UPLOAD_PATH = "/v1/search/upload"


@router.post(
    "/upload",
    response_model=SearchResponse,
    responses={
        **UPLOAD_ERRORS,
    },
)
def search_upload(
    retriever: RetrieverDep,
    parser: ParserDep,
    file: Annotated[
        UploadFile, File(description=".npy/.npz, .nii(.gz), .mha, or .zip (DICOM or .mhd+.raw)")
    ],
    center_xyz: Annotated[
        str | None, Form(description="x,y,z world mm (LPS); default: volume centre")
    ] = None,
    spacing_zyx: Annotated[str | None, Form(description="z,y,x mm; required for arrays")] = None,
    series_uid: SeriesUidField = None,
    k: KField = 5,
    exclude_patient_id: ExcludePatientField = None,
    labelled_only: LabelledOnlyField = False,
    preview: Annotated[
        bool, Form(description="also return the query patch's slices (query.preview_png_base64)")
    ] = False,
    mask: MaskField = None,
    estimate_size: Annotated[
        bool,
        Form(description="without a mask: estimate the size by region growing from the point"),
    ] = False,
) -> SearchResponse:
    """Similar nodules to the one at ``center_xyz`` (or the mask's centroid) in an upload."""
    received = receive_upload(
        parser,
        retriever.embedder.card.preprocessing,
        UploadForm(
            file=file,
            mask=mask,
            center_xyz=center_xyz,
            spacing_zyx=spacing_zyx,
            series_uid=series_uid,
            estimate_size=estimate_size,
        ),
        profile=retriever.embedder.uses_profile,
    )
    filters = Filters(exclude_patient_id=exclude_patient_id, labelled_only=labelled_only)
    # A catalogue series uploaded (named by series_uid) leaves out what a point query in it does.
    response = retriever.search_patch(
        received.patch, k, filters, series_uid=series_uid, preview=preview
    )
    logger.info(
        "upload search (%s, %.1f MB): %d neighbours, %d labelled",
        received.what,
        received.n_bytes / 1e6,
        len(response.neighbors),
        response.vote.n_labelled,
    )
    return response
