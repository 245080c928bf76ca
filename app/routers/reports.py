"""Search results as DICOM, for the PACS and the radiologist's own viewer."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.routers.deps import RetrieverDep, UidHasherDep
from app.schemas import CoordinateQuery, Problem

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/reports", tags=["reports"])

DICOM_MEDIA_TYPE = "application/dicom"


@router.post(
    "/sr",
    response_class=Response,
    responses={
        200: {
            "content": {DICOM_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
            "description": "a DICOM Comprehensive 3D SR (TID 1500) in the queried study",
        },
        201: {
            "content": {DICOM_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
            "description": "store=true: the SR, now stored in the PACS (its WADO-RS URL in "
            "Location)",
        },
        404: {"model": Problem},
        422: {"model": Problem},
        503: {"model": Problem},
    },
)
def report_sr(
    query: CoordinateQuery,
    retriever: RetrieverDep,
    hash_uid: UidHasherDep,
    store: Annotated[
        bool,
        Query(
            description="also store the SR in the PACS the series came from (STOW-RS); the "
            "series must be read from the PACS (study_uid)"
        ),
    ] = False,
) -> Response:
    """The coordinate search of the body as a DICOM Structured Report of the queried study.

    The series must be DICOM (a folder under the data root, or a study in the PACS): the SR takes
    that study's patient and study modules and references the slices the query used. It holds
    the query point, the size estimate, each neighbour (catalogue id, similarity, mean rating)
    and the vote, marked as decision support, not a diagnosis. ``estimate_size`` is implied.
    With ``store=true`` the same bytes are stored in the PACS (201, ``Location``: the instance).
    """
    if store:
        retriever.check_can_store()  # refused before any search work
    report = retriever.report_sr(
        query.series_uid, query.center_xyz, query.k, query.filters, query.study_uid
    )
    headers = {"Content-Disposition": 'attachment; filename="nodule-search-sr.dcm"'}
    status = 200
    if store:
        stored = retriever.store_report(report)
        headers["Location"] = stored[0].url
        status = 201
    logger.info(
        "SR of a search on series %s (%d bytes%s)",
        hash_uid(query.series_uid),
        len(report.body),
        ", stored in the PACS" if store else "",
    )
    return Response(report.body, status_code=status, media_type=DICOM_MEDIA_TYPE, headers=headers)
