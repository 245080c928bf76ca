"""Liveness, readiness and what is being served."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.problems import Problem, problem_response
from app.routers.deps import RetrieverDep
from app.schemas import IndexInfo, MatchThresholdOut, ReadyOut

router = APIRouter(tags=["health"])
#: ``/v1/index``: under the access token like every /v1 route (probes above stay open).
info_router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process is up and serving HTTP."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=ReadyOut,
    responses={
        503: {
            "model": Problem,
            "description": "model and index disagree, or the served version is gone",
        }
    },
)
async def readyz(retriever: RetrieverDep) -> ReadyOut | JSONResponse:
    """Readiness: model and catalogue are loaded and the catalogue was built with this model."""
    if not retriever.ready:
        return problem_response(
            503, "the catalogue was built with another model (fingerprint mismatch)"
        )
    return ReadyOut(status="ready", index_version=retriever.catalog.version)


@info_router.get("/v1/index", response_model=IndexInfo)
async def index_info(retriever: RetrieverDep) -> IndexInfo:
    """The catalogue version being served, its counts and the model card summary."""
    m = retriever.catalog.manifest
    return IndexInfo(
        version=retriever.catalog.version,
        n_nodules=m.n_nodules,
        n_scans=m.n_scans,
        n_labelled=m.n_labelled,
        index_type=m.index_type,
        created_at=m.created_at.isoformat(),
        model=retriever.embedder.card.summary(),
        match_threshold=(
            MatchThresholdOut(
                value=threshold.value,
                percentile=threshold.percentile,
                n_queries=threshold.n_queries,
                rule=threshold.rule,
            )
            if (threshold := retriever.match_threshold) is not None
            else None
        ),
    )
