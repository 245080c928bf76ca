"""Search by a point in a stored CT."""

from __future__ import annotations

from fastapi import APIRouter

from app.routers.deps import RetrieverDep
from app.schemas import CoordinateQuery, ErrorOut, SearchResponse

router = APIRouter(prefix="/v1/search", tags=["search"])


@router.post(
    "/coordinate",
    response_model=SearchResponse,
    responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}},
)
def search_coordinate(query: CoordinateQuery, retriever: RetrieverDep) -> SearchResponse:
    """Similar nodules to the one at ``center_xyz`` (world mm, LPS) in stored series ``series_uid``.

    A plain ``def``: reading, the network and FAISS are CPU-bound and run in the threadpool.
    """
    return retriever.search_coordinate(query.series_uid, query.center_xyz, query.k, query.filters)
