"""Liveness, readiness and what is being served."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.routers.deps import RetrieverDep
from app.schemas import IndexInfo, MatchThresholdOut

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process is up and serving HTTP."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "model and index disagree"}})
async def readyz(retriever: RetrieverDep) -> JSONResponse:
    """Readiness: model and catalogue are loaded and the catalogue was built with this model."""
    if not retriever.ready:
        return JSONResponse(
            status_code=503,
            content={"detail": "the catalogue was built with another model (fingerprint mismatch)"},
        )
    return JSONResponse({"status": "ready", "index_version": retriever.catalog.version})


@router.get("/v1/index", response_model=IndexInfo)
async def index_info(retriever: RetrieverDep) -> IndexInfo:
    """The catalogue version being served, its counts and the model card summary."""
    m = retriever.catalog.manifest
    return IndexInfo(
        version=retriever.catalog.version,
        n_nodules=int(m["n_nodules"]),
        n_scans=int(m["n_scans"]),
        n_labelled=int(m["n_labelled"]),
        index_type=str(m["index_type"]),
        created_at=str(m["created_at"]),
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
