"""Operator endpoints, guarded by ``NODULE_API_KEY`` (disabled when none is configured)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException
from starlette.concurrency import run_in_threadpool

from app.routers.deps import ServingDep, SettingsDep
from app.schemas import ErrorOut

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post(
    "/reload",
    responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 503: {"model": ErrorOut}},
)
async def reload(
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
        raise HTTPException(status_code=401, detail="missing or wrong X-API-Key")
    try:
        # Loading the model and the index is blocking work: keep it off the event loop.
        fresh = await run_in_threadpool(serving.reload)
    except (OSError, ValueError, RuntimeError) as e:
        raise HTTPException(
            status_code=503, detail=f"reload failed, still serving the old version: {e}"
        ) from None
    return {"index_version": fresh.catalog.version, "ready": fresh.ready}
