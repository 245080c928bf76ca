"""Stored scans and the catalogue map, for the viewer page (and any other client)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from app.errors import InputError, parse_triple
from app.preview import (
    MAX_VIEW_PX,
    MIN_DEFAULT_VIEW_PX,
    ZOOM_FOV_RANGE_MM,
    axial_view_png,
    preview_png,
    zoom_png,
)
from app.problems import Problem
from app.routers.deps import (
    MAX_SQLITE_INT,
    BrowserDep,
    DisplayWindowDep,
    ScanDoorDep,
    SettingsDep,
)
from app.schemas import MapOut, ScanList, ScanOut, ViewerLink

router = APIRouter(prefix="/v1", tags=["scans"])

PNG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}},
    404: {"model": Problem},
    422: {"model": Problem},
}


@router.get("/scans", response_model=ScanList)
def list_scans(
    browser: BrowserDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=MAX_SQLITE_INT)] = 0,
) -> ScanList:
    """The catalogue's scans (series UID, patient, number of indexed nodules), by series UID."""
    return browser.scan_page(limit, offset)


@router.get("/scans/{series_uid}", response_model=ScanOut, responses={404: {"model": Problem}})
def get_scan(series_uid: str, browser: BrowserDep) -> ScanOut:
    """A stored series: its world extent (mm, LPS), voxel size and the catalogue nodules in it."""
    return browser.scan(series_uid)


@router.get(
    "/scans/{series_uid}/ohif",
    response_model=ViewerLink,
    responses={404: {"model": Problem}, 422: {"model": Problem}, 503: {"model": Problem}},
)
def ohif_link(
    series_uid: str,
    browser: BrowserDep,
    settings: SettingsDep,
    center_xyz: Annotated[str, Query(description="x,y,z world mm (LPS)", max_length=100)],
) -> ViewerLink:
    """Where the deployment's OHIF Viewer (``NODULE_OHIF_URL``) opens a PACS series at a point.

    The link opens the series' study in OHIF's Basic Viewer at the axial image through the
    point (``initialSOPInstanceUID``). 404 when no OHIF Viewer is configured, 422 for a series
    not read from the PACS or a point outside its slices.
    """
    center = parse_triple(center_xyz, "center_xyz")
    if center is None:
        raise InputError("center_xyz is required (x,y,z in mm)")
    return browser.viewer_link(series_uid, (center[0], center[1], center[2]), settings.ohif_url)


@router.get("/scans/{series_uid}/axial.png", response_class=Response, responses=PNG)
def axial_view(
    series_uid: str,
    scans: ScanDoorDep,
    window: DisplayWindowDep,
    z: Annotated[float, Query(description="world z, mm (LPS)")],
    pixel_mm: Annotated[
        float | None,
        Query(
            gt=0.1,
            le=10.0,
            description="pixel size, mm; default: the scan's voxel size, finer when that gives "
            f"fewer than {MIN_DEFAULT_VIEW_PX} px a side; raised so no side exceeds "
            f"{MAX_VIEW_PX} px",
        ),
    ] = None,
) -> Response:
    """A world-aligned axial plane over the scan's x-y extent, in the given window (default lung).

    Pixel (row r, column c) is world (extent_min_x + c * p, extent_min_y + r * p, z) with p the
    ``X-Pixel-MM`` header; at most 768 pixels a side. ``X-Window`` echoes width/level (HU).
    """
    source = scans.open(series_uid)
    png, pixel = axial_view_png(source, z, pixel_mm, window)
    headers = {
        "X-Pixel-MM": repr(pixel),
        "X-Window": f"{window.width:g}/{window.level:g}",
    }
    return Response(png, media_type="image/png", headers=headers)


@router.get("/scans/{series_uid}/preview.png", response_class=Response, responses=PNG)
def point_preview(
    series_uid: str,
    scans: ScanDoorDep,
    window: DisplayWindowDep,
    center_xyz: Annotated[str, Query(description="x,y,z world mm (LPS)", max_length=100)],
) -> Response:
    """Axial, coronal and sagittal slices (64 mm) through a point of a scan, default lung window."""
    center = parse_triple(center_xyz, "center_xyz")
    if center is None:
        raise InputError("center_xyz is required (x,y,z in mm)")
    source = scans.open(series_uid)
    png = preview_png(source, (center[0], center[1], center[2]), window)
    return Response(png, media_type="image/png")


@router.get("/scans/{series_uid}/zoom.png", response_class=Response, responses=PNG)
def zoomed_view(
    series_uid: str,
    scans: ScanDoorDep,
    window: DisplayWindowDep,
    center_xyz: Annotated[str, Query(description="x,y,z world mm (LPS)", max_length=100)],
    fov_mm: Annotated[
        float,
        Query(
            ge=ZOOM_FOV_RANGE_MM[0],
            le=ZOOM_FOV_RANGE_MM[1],
            allow_inf_nan=False,
            description="side of the square field, mm",
        ),
    ] = 64.0,
) -> Response:
    """An axial view, ``fov_mm`` square and 256 px a side, centred on a point (default lung).

    For side-by-side comparison: the viewer asks for each nodule's centre plus one z offset.
    ``X-Pixel-MM`` gives the pixel size; a point outside the scan is a 422.
    """
    center = parse_triple(center_xyz, "center_xyz")
    if center is None:
        raise InputError("center_xyz is required (x,y,z in mm)")
    source = scans.open(series_uid)
    png, pixel = zoom_png(source, (center[0], center[1], center[2]), fov_mm, window)
    return Response(png, media_type="image/png", headers={"X-Pixel-MM": repr(pixel)})


@router.get("/map", response_model=MapOut)
def catalogue_map(browser: BrowserDep) -> MapOut:
    """Every nodule's position on the catalogue's 2-D map (t-SNE computed at build time)."""
    return browser.map_points()
