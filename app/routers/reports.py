"""Search results as DICOM, for the PACS and the radiologist's own viewer."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response

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
        404: {"model": Problem},
        422: {"model": Problem},
        503: {"model": Problem},
    },
)
def report_sr(query: CoordinateQuery, retriever: RetrieverDep, hash_uid: UidHasherDep) -> Response:
    """The coordinate search of the body as a DICOM Structured Report of the queried study.

    The series must be stored as DICOM (a folder under the data root): the SR takes that study's
    patient and study modules and references the slices the query used. It holds the query
    point, the size estimate, each neighbour (catalogue id, similarity, mean rating) and the
    vote, marked as decision support, not a diagnosis. ``estimate_size`` is implied.
    """
    body = retriever.report_sr(query.series_uid, query.center_xyz, query.k, query.filters)
    logger.info("SR of a search on series %s (%d bytes)", hash_uid(query.series_uid), len(body))
    return Response(
        body,
        media_type=DICOM_MEDIA_TYPE,
        headers={"Content-Disposition": 'attachment; filename="nodule-search-sr.dcm"'},
    )
