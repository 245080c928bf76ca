"""Typed accessors of the lifespan state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request

from app.catalogue import CatalogueBrowser
from app.preview import LUNG_WINDOW, WINDOW_LEVEL_RANGE, WINDOW_WIDTH_RANGE, DisplayWindow
from app.privacy import UidHasher
from app.reports import Reporter
from app.retrieval import Retriever
from app.scans import ScanDoor
from app.settings import AppSettings
from app.slots import Slots
from app.state import Served, Serving
from app.uploads.parser import UploadParser

#: The largest id SQLite stores (a signed 64-bit integer); a larger one is no catalogue id.
MAX_SQLITE_INT = 2**63 - 1

#: A catalogue nodule id in a path: bounded, so SQLite never sees an int it cannot bind.
NoduleIdPath = Annotated[
    int, Path(ge=0, le=MAX_SQLITE_INT, description="catalogue nodule id (0 to 2^63 - 1)")
]


async def get_served(request: Request) -> Served:
    """The version being served when the request arrived (kept for the whole request).

    Every dependency below takes it from here, so one request never mixes two versions.

    Raises:
        CatalogUnavailableError: the served version vanished and none can be opened (503).
    """
    serving: Serving = request.state.serving
    return serving.served()


async def get_retriever(served: Annotated[Served, Depends(get_served)]) -> Retriever:
    """The served version's search."""
    return served.retriever


async def get_browser(served: Annotated[Served, Depends(get_served)]) -> CatalogueBrowser:
    """The served version's nodules, scans and map."""
    return served.browser


async def get_reporter(served: Annotated[Served, Depends(get_served)]) -> Reporter:
    """The served version's SR and SEG writer."""
    return served.reporter


async def get_scans(served: Annotated[Served, Depends(get_served)]) -> ScanDoor:
    """The scan door: a series UID to its CT."""
    return served.scans


async def get_parser(request: Request) -> UploadParser:
    """The upload parser (its processes are started per upload)."""
    parser: UploadParser = request.state.parser
    return parser


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


ServedDep = Annotated[Served, Depends(get_served)]
RetrieverDep = Annotated[Retriever, Depends(get_retriever)]
BrowserDep = Annotated[CatalogueBrowser, Depends(get_browser)]
ReporterDep = Annotated[Reporter, Depends(get_reporter)]
ScanDoorDep = Annotated[ScanDoor, Depends(get_scans)]
ParserDep = Annotated[UploadParser, Depends(get_parser)]
ServingDep = Annotated[Serving, Depends(get_serving)]
UidHasherDep = Annotated[UidHasher, Depends(get_uid_hasher)]
SettingsDep = Annotated[AppSettings, Depends(get_settings)]
DisplayWindowDep = Annotated[DisplayWindow, Depends(get_display_window)]
ReportSlotsDep = Annotated[Slots, Depends(get_report_slots)]
