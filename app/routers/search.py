"""Search by a point in a stored CT."""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext

from fastapi import APIRouter

from app.problems import Problem
from app.retrieval import PointOptions
from app.routers.deps import ReportSlotsDep, RetrieverDep, UidHasherDep
from app.schemas import CoordinateQuery, SearchResponse

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/search", tags=["search"])


@router.post(
    "/coordinate",
    response_model=SearchResponse,
    responses={404: {"model": Problem}, 422: {"model": Problem}, 503: {"model": Problem}},
)
def search_coordinate(
    query: CoordinateQuery,
    retriever: RetrieverDep,
    hash_uid: UidHasherDep,
    slots: ReportSlotsDep,
) -> SearchResponse:
    """Similar nodules to the one at ``center_xyz`` (world mm, LPS) in series ``series_uid``.

    With ``study_uid`` the series is read from the configured PACS over DICOMweb (only the slices
    the patch needs); a series not in the PACS is a 404, an unreachable PACS a 503.

    When the series is a catalogue scan, its patient's other nodules are left out unless
    ``include_own_patient`` (``query.excluded_patient_id`` says whose were), and the catalogue
    nodule at the point is the query itself (``query.nodule_id``): never a neighbour, never a
    vote. ``measured_axes_mm`` (the viewer's ruler) is answered as ``size_measured``.
    """
    started = time.perf_counter()
    try:
        options = PointOptions.of(query)
        # A size estimate (asked for, or the ruler's type) is the bounded kind of work.
        sized = options.estimate_size or options.measured is not None
        with slots.hold() if sized else nullcontext():
            response = retriever.search_coordinate(
                query.series_uid, query.center_xyz, options, query.study_uid
            )
    except Exception as error:
        logger.info(
            "coordinate search on series %s (study %s) refused: %s",
            hash_uid(query.series_uid),
            hash_uid(query.study_uid),
            type(error).__name__,
        )
        raise
    logger.info(
        "coordinate search on series %s: %d neighbours, %d labelled, %.1f ms",
        hash_uid(query.series_uid),
        len(response.neighbors),
        response.vote.n_labelled,
        (time.perf_counter() - started) * 1000.0,
    )
    return response
