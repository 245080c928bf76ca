"""Catalogue nodules and their neighbours."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.preview import preview_png
from app.problems import Problem
from app.routers.deps import (
    BrowserDep,
    DisplayWindowDep,
    NoduleIdPath,
    ReportSlotsDep,
    RetrieverDep,
    ScanDoorDep,
)
from app.schemas import Filters, NoduleDetail, SearchResponse

router = APIRouter(prefix="/v1/nodules", tags=["nodules"])


@router.get("/{nodule_id}", response_model=NoduleDetail, responses={404: {"model": Problem}})
def get_nodule(
    nodule_id: NoduleIdPath,
    browser: BrowserDep,
    slots: ReportSlotsDep,
    estimate_size: Annotated[
        bool,
        Query(description="also its size and type by region growing from its centre (an estimate)"),
    ] = False,
) -> NoduleDetail:
    """One catalogue nodule with its readers' ratings, labels and median characteristics."""
    with slots.hold() if estimate_size else nullcontext():
        return browser.nodule_detail(nodule_id, estimate_size=estimate_size)


@router.get(
    "/{nodule_id}/preview.png",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}},
        404: {"model": Problem},
        422: {"model": Problem},
    },
)
def preview(
    nodule_id: NoduleIdPath, browser: BrowserDep, scans: ScanDoorDep, window: DisplayWindowDep
) -> Response:
    """Axial, coronal and sagittal slices (64 mm) through the nodule's centre (default: lung)."""
    nodule = browser.nodule(nodule_id)
    source = scans.open(nodule.series_uid)
    return Response(preview_png(source, nodule.center_xyz, window), media_type="image/png")


@router.get(
    "/{nodule_id}/similar", response_model=SearchResponse, responses={404: {"model": Problem}}
)
def similar(
    nodule_id: NoduleIdPath,
    retriever: RetrieverDep,
    k: Annotated[int, Query(ge=1, description="neighbours (at most NODULE_MAX_K)")] = 5,
    exclude_patient_id: Annotated[
        str | None, Query(max_length=128, description="drop this patient's nodules too")
    ] = None,
    labelled_only: Annotated[
        bool, Query(description="only neighbours with a benign/malignant label")
    ] = False,
    include_own_patient: Annotated[
        bool,
        Query(
            description="also return the nodule's own patient's other nodules (default: left "
            "out, as a coordinate search leaves out the queried scan's patient)"
        ),
    ] = False,
) -> SearchResponse:
    """The nodules most similar to an indexed one: never itself, nor (unless asked) its patient's.

    ``query.excluded_patient_id`` says whose nodules were left out.
    """
    filters = Filters(exclude_patient_id=exclude_patient_id, labelled_only=labelled_only)
    return retriever.similar_to(nodule_id, k, filters, include_own_patient=include_own_patient)
