"""Typed accessors of the lifespan state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request

from app.preview import LUNG_WINDOW, WINDOW_LEVEL_RANGE, WINDOW_WIDTH_RANGE, DisplayWindow
from app.privacy import UidHasher
from app.retrieval import Retriever
from app.settings import AppSettings
from app.slots import Slots
from app.state import Serving

#: The largest id SQLite stores (a signed 64-bit integer); a larger one is no catalogue id.
MAX_SQLITE_INT = 2**63 - 1

#: A catalogue nodule id in a path: bounded, so SQLite never sees an int it cannot bind.
NoduleIdPath = Annotated[
    int, Path(ge=0, le=MAX_SQLITE_INT, description="catalogue nodule id (0 to 2^63 - 1)")
]


async def get_retriever(request: Request) -> Retriever:
    """The retriever being served when the request arrived (kept for the whole request).

    Raises:
        CatalogUnavailableError: the served version vanished and none can be opened (503).
    """
    serving: Serving = request.state.serving
    return serving.retriever()


async def get_serving(request: Request) -> Serving:
    """The holder of the served retriever (for reloads)."""
    serving: Serving = request.state.serving
    return serving


async def get_uid_hasher(request: Request) -> UidHasher:
    """The keyed hash that stands for UIDs in log lines."""
    serving: Serving = request.state.serving
    return serving.hash_uid


async def get_report_slots(request: Request) -> Slots:
    """The bound on report and size-estimate work running at once."""
    slots: Slots = request.state.reports
    return slots


async def get_settings(request: Request) -> AppSettings:
    """The settings the app was created with."""
    settings: AppSettings = request.state.settings
    return settings


def get_display_window(
    window: Annotated[
        float | None,
        Query(
            ge=WINDOW_WIDTH_RANGE[0],
            le=WINDOW_WIDTH_RANGE[1],
            allow_inf_nan=False,
            description="display window width, HU (lung 1500, mediastinum 350, bone 1800); "
            "default: lung",
        ),
    ] = None,
    level: Annotated[
        float | None,
        Query(
            ge=WINDOW_LEVEL_RANGE[0],
            le=WINDOW_LEVEL_RANGE[1],
            allow_inf_nan=False,
            description="display window centre, HU (lung -600, mediastinum 50, bone 400); "
            "default: lung",
        ),
    ] = None,
) -> DisplayWindow:
    """The grey-scale window of a PNG view; either value left out keeps the lung window's."""
    return DisplayWindow(
        width=LUNG_WINDOW.width if window is None else window,
        level=LUNG_WINDOW.level if level is None else level,
    )


RetrieverDep = Annotated[Retriever, Depends(get_retriever)]
ServingDep = Annotated[Serving, Depends(get_serving)]
UidHasherDep = Annotated[UidHasher, Depends(get_uid_hasher)]
SettingsDep = Annotated[AppSettings, Depends(get_settings)]
DisplayWindowDep = Annotated[DisplayWindow, Depends(get_display_window)]
ReportSlotsDep = Annotated[Slots, Depends(get_report_slots)]
