"""Operator endpoints, guarded by ``NODULE_API_KEY`` (disabled when none is configured)."""

from __future__ import annotations

import hmac
import logging
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from app.access import FailedAttempts, client_of
from app.problems import Problem
from app.routers.deps import ServingDep, SettingsDep

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post(
    "/reload",
    responses={
        401: {"model": Problem},
        403: {"model": Problem},
        429: {"model": Problem, "description": "too many failed attempts (Retry-After)"},
        503: {"model": Problem},
    },
)
async def reload(
    request: Request,
    serving: ServingDep,
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header()] = None,
) -> dict[str, object]:
    """Switch to the catalogue version ``CURRENT`` names now; requests in flight finish first."""
    if settings.api_key is None:
        raise HTTPException(
            status_code=403, detail="admin endpoints are disabled (no NODULE_API_KEY)"
        )
    expected = settings.api_key.get_secret_value().encode()
    if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), expected):
        attempts: FailedAttempts = request.state.failed_attempts
        attempts.failed("admin", client_of(request))  # 429 past the limit: failures only
        logger.warning("admin request with a missing or wrong key refused")
        raise HTTPException(status_code=401, detail="missing or wrong X-API-Key")
    try:
        # Loading the model and the index is blocking work: keep it off the event loop.
        fresh = await run_in_threadpool(serving.reload)
    except (OSError, ValueError, RuntimeError) as e:
        raise HTTPException(
            status_code=503, detail=f"reload failed, still serving the old version: {e}"
        ) from None
    return {"index_version": fresh.catalog.version, "ready": fresh.retriever.ready}
