"""Typed accessors of the lifespan state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.retrieval import Retriever
from app.settings import AppSettings


async def get_retriever(request: Request) -> Retriever:
    """The retriever the lifespan loaded."""
    retriever: Retriever = request.state.retriever
    return retriever


async def get_settings(request: Request) -> AppSettings:
    """The settings the app was created with."""
    settings: AppSettings = request.state.settings
    return settings


RetrieverDep = Annotated[Retriever, Depends(get_retriever)]
SettingsDep = Annotated[AppSettings, Depends(get_settings)]
