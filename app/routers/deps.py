"""Typed accessors of the lifespan state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.privacy import UidHasher
from app.retrieval import Retriever
from app.settings import AppSettings
from app.state import Serving


async def get_retriever(request: Request) -> Retriever:
    """The retriever being served when the request arrived (kept for the whole request)."""
    serving: Serving = request.state.serving
    return serving.current


async def get_serving(request: Request) -> Serving:
    """The holder of the served retriever (for reloads)."""
    serving: Serving = request.state.serving
    return serving


async def get_uid_hasher(request: Request) -> UidHasher:
    """The keyed hash that stands for UIDs in log lines."""
    serving: Serving = request.state.serving
    return serving.hash_uid


async def get_settings(request: Request) -> AppSettings:
    """The settings the app was created with."""
    settings: AppSettings = request.state.settings
    return settings


RetrieverDep = Annotated[Retriever, Depends(get_retriever)]
ServingDep = Annotated[Serving, Depends(get_serving)]
UidHasherDep = Annotated[UidHasher, Depends(get_uid_hasher)]
SettingsDep = Annotated[AppSettings, Depends(get_settings)]
