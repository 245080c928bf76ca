"""Search by an uploaded volume or patch."""

from __future__ import annotations

import base64
import logging
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile

from app.preview import patch_preview_png
from app.routers.deps import RetrieverDep
from app.schemas import (
    Filters,
    SearchResponse,
    SizeEstimate,
)
from app.uploads import (
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
    request: Request,
    retriever: RetrieverDep,
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
        request.state.parser,
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
    cut = received.patch
    filters = Filters(exclude_patient_id=exclude_patient_id, labelled_only=labelled_only)
    query: dict[str, Any] = {"center_xyz": cut.center_xyz, "index_zyx": cut.index_zyx}
    if preview:
        query["preview_png_base64"] = base64.b64encode(patch_preview_png(cut.patch)).decode()
    found = None
    if cut.size is not None and cut.size_method is not None:
        found = SizeEstimate.of(cut.size, cut.size_method)
    # A catalogue series uploaded (named by series_uid) leaves out what a point query in it does.
    exclusions = retriever.upload_exclusions(series_uid, cut.center_xyz)
    query["nodule_id"] = exclusions.query_nodule_id
    vector, size = retriever.upload_vector(cut, exclusions)
    response = retriever.respond(
        vector, k, filters, query, exclusions, size_estimate=found, size=size
    )
    logger.info(
        "upload search (%s, %.1f MB): %d neighbours, %d labelled",
        received.what,
        received.n_bytes / 1e6,
        len(response.neighbors),
        response.vote.n_labelled,
    )
    return response
