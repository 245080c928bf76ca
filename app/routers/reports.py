"""Search results as DICOM, for the PACS and the radiologist's own viewer."""

from __future__ import annotations

import logging
import secrets
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile

from app.problems import Problem
from app.reports import EncodedReport
from app.retrieval import PointOptions
from app.routers.deps import ParserDep, ReporterDep, ReportSlotsDep, RetrieverDep, UidHasherDep
from app.schemas import CoordinateQuery, Filters
from app.uploads.forms import (
    UPLOAD_ERRORS,
    ExcludePatientField,
    KField,
    LabelledOnlyField,
    MaskField,
    SeriesUidField,
    UploadForm,
    receive_upload,
)

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/reports", tags=["reports"])

DICOM_MEDIA_TYPE = "application/dicom"
UPLOAD_PATH = "/v1/reports/sr/upload"


MULTIPART_DICOM = 'multipart/related; type="application/dicom"'
_BINARY = {"schema": {"type": "string", "format": "binary"}}


def multipart_related(parts: list[bytes]) -> tuple[bytes, str]:
    """DICOM objects as one multipart/related body (RFC 2387), and its content type.

    The parts are ``application/dicom``, as WADO-RS sends instances.
    """
    boundary = secrets.token_hex(16)
    chunks = []
    for part in parts:
        chunks += [f"--{boundary}\r\nContent-Type: {DICOM_MEDIA_TYPE}\r\n\r\n".encode(), part]
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"{MULTIPART_DICOM}; boundary={boundary}"


@router.post(
    "/sr",
    response_class=Response,
    responses={
        200: {
            "content": {DICOM_MEDIA_TYPE: _BINARY, MULTIPART_DICOM: _BINARY},
            "description": "a DICOM Comprehensive 3D SR (TID 1500) in the queried study; with "
            "seg=true the SR and the estimated mask's SEG as multipart/related",
        },
        201: {
            "content": {DICOM_MEDIA_TYPE: _BINARY, MULTIPART_DICOM: _BINARY},
            "description": "store=true: the same, now stored in the PACS (the SR's WADO-RS URL "
            "in Location)",
        },
        404: {"model": Problem},
        422: {"model": Problem},
        503: {"model": Problem},
    },
)
def report_sr(
    query: CoordinateQuery,
    reporter: ReporterDep,
    slots: ReportSlotsDep,
    hash_uid: UidHasherDep,
    store: Annotated[
        bool,
        Query(
            description="also store the report in the PACS the series came from (STOW-RS); "
            "the series must be read from the PACS (study_uid)"
        ),
    ] = False,
    seg: Annotated[
        bool,
        Query(
            description="the estimated mask as a DICOM SEG goes along, referenced by the SR "
            "(multipart/related: the SR, then the SEG when a mask could be grown)"
        ),
    ] = False,
) -> Response:
    """The coordinate search of the body as a DICOM Structured Report of the queried study.

    The series must be DICOM (a folder under the data root, or a study in the PACS): the SR takes
    that study's patient and study modules and references the slices the query used. It holds
    the query point, the size estimate (and the user's ``measured_axes_mm``, marked as measured
    by the user), each neighbour (catalogue id, similarity, mean rating, weak match) and the
    match state: with no close match the vote is withheld and not coded, as on the screen; the
    queried nodule and (unless ``include_own_patient``) its patient are left out as in the
    search. All of it marked as decision support, not a diagnosis. ``estimate_size`` is implied.
    With ``store=true`` the same bytes are stored in the PACS (201, ``Location``: the SR).
    """
    if store:
        reporter.check_can_store()  # refused before any search work
    with slots.hold():
        report = reporter.report_sr(
            query.series_uid,
            query.center_xyz,
            PointOptions.of(query),
            query.study_uid,
            with_seg=seg,
        )
    status = 200
    headers = {}
    if store:
        stored = reporter.store_report(report)
        headers["Location"] = stored[0].url
        status = 201
    logger.info(
        "SR of a search on series %s (%d objects, %d bytes%s)",
        hash_uid(query.series_uid),
        len(report.files.parts),
        sum(len(p) for p in report.files.parts),
        ", stored in the PACS" if store else "",
    )
    return _dicom_response(report, seg, status, headers)


def _dicom_response(
    report: EncodedReport, seg: bool, status: int, headers: dict[str, str]
) -> Response:
    """The SR alone (``application/dicom``), or with ``seg`` the SR and SEG as multipart."""
    if seg:
        body, media_type = multipart_related(report.files.parts)
        return Response(body, status_code=status, media_type=media_type, headers=headers)
    headers["Content-Disposition"] = 'attachment; filename="nodule-search-sr.dcm"'
    return Response(
        report.files.sr, status_code=status, media_type=DICOM_MEDIA_TYPE, headers=headers
    )


@router.post(
    "/sr/upload",
    response_class=Response,
    responses={
        200: {
            "content": {DICOM_MEDIA_TYPE: _BINARY, MULTIPART_DICOM: _BINARY},
            "description": "the SR of a search in an uploaded DICOM series (with seg=true, "
            "and the SEG)",
        },
        **UPLOAD_ERRORS,
    },
)
def report_upload(
    retriever: RetrieverDep,
    reporter: ReporterDep,
    parser: ParserDep,
    slots: ReportSlotsDep,
    file: Annotated[UploadFile, File(description="a .zip of the DICOM CT series")],
    center_xyz: Annotated[
        str | None, Form(description="x,y,z world mm (LPS); default: the mask's centroid")
    ] = None,
    mask: MaskField = None,
    series_uid: SeriesUidField = None,
    k: KField = 5,
    exclude_patient_id: ExcludePatientField = None,
    labelled_only: LabelledOnlyField = False,
    seg: Annotated[
        bool, Form(description="the nodule's mask as a DICOM SEG goes along (multipart)")
    ] = False,
) -> Response:
    """The search of an uploaded DICOM series as a DICOM SR of its study (and the SEG).

    The same report as ``POST /v1/reports/sr``, for a series sent in the request (a zip of its
    DICOM files) instead of one the service holds; the size comes from the mask when one is
    sent, else from region growing at ``center_xyz``. Parsed in the upload parser process, with
    its limits. Nothing is stored: the upload is not from the PACS.
    """
    received = receive_upload(
        parser,
        retriever.embedder.card.preprocessing,
        UploadForm(file=file, mask=mask, center_xyz=center_xyz, series_uid=series_uid, report=True),
        profile=retriever.embedder.uses_profile,
    )
    filters = Filters(exclude_patient_id=exclude_patient_id, labelled_only=labelled_only)
    with slots.hold():
        report = reporter.report_upload(received.patch, k, filters, with_seg=seg)
    logger.info(
        "SR of an upload search (%s, %.1f MB; %d objects)",
        received.what,
        received.n_bytes / 1e6,
        len(report.files.parts),
    )
    return _dicom_response(report, seg, 200, {})
