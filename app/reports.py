"""A search as DICOM: the SR (and the mask's SEG) of a point or an upload, and into the PACS.

The report says what the answer to the same search shows, no more (``outcome``): the match
state (no vote when it is withheld), weak matches and the user's measurement.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pydicom

from app.errors import InputError
from app.retrieval import PointOptions, Retriever
from app.scans import from_pacs
from app.schemas import Filters, SearchResponse
from app.uploads.parse import UploadPatch
from model.clinical.measure import estimated_by, ruler_measurement
from model.clinical.report import ReportFiles, SearchOutcome, assemble_report
from model.clinical.sr import SimilarCase
from model.clinical.vote import MatchState
from model.ct.dicomweb import Pacs, StoredInstance


@dataclass(frozen=True)
class EncodedReport:
    """A search's DICOM objects as encoded for the caller (Part 10 bytes)."""

    files: ReportFiles
    from_pacs: bool
    """Its series was read from the PACS (so it can be stored there)."""


def outcome(response: SearchResponse) -> SearchOutcome:
    """A search answer as a report names it: what the screen shows, no more.

    Catalogue ids, similarities, mean ratings and weak-match marks; the match state, so that a
    withheld vote is left out; the user's ruler measurement, when given.
    """
    query = response.query
    measured = response.size_measured
    return SearchOutcome(
        neighbors=[
            SimilarCase(n.id, n.similarity, n.labels.mean if n.labels else None, n.weak_match)
            for n in response.neighbors
        ],
        malignant_probability=response.vote.malignant_share,
        vote_binary=response.vote.binary,
        match=MatchState(query.best_similarity, query.match_threshold, query.close_match),
        measured=(
            ruler_measurement(measured.long_axis_mm, measured.short_axis_mm, measured.nodule_type)
            if measured is not None
            else None
        ),
    )


def uploaded_series_uid(cut: UploadPatch) -> str | None:
    """The series UID of an uploaded DICOM series, from the headers the parser kept (or None)."""
    if cut.headers is None or not cut.headers.headers:
        return None
    first = next(iter(cut.headers.headers.values()))
    uid = first.get("SeriesInstanceUID")
    return str(uid) if uid else None


class Reporter:
    """The SR and SEG of the served version's searches, and their way into the PACS."""

    def __init__(self, retriever: Retriever) -> None:
        self.retriever = retriever
        self.scans = retriever.scans

    def report_sr(
        self,
        series_uid: str,
        center_xyz: tuple[float, float, float],
        options: PointOptions,
        study_uid: str | None = None,
        *,
        with_seg: bool = False,
    ) -> EncodedReport:
        """The search at a point of a stored DICOM series as a DICOM SR (``model.clinical.report``).

        The SR carries what the answer to the same search shows: the match state (no vote when
        it is withheld), weak matches, and the user's measurement. With ``with_seg`` the
        estimated mask goes along as a SEG.

        Raises:
            InputError: the series is not stored as DICOM (an SR belongs to a DICOM study).
            NotFoundError: the series is nowhere to be found.
        """
        search = self.retriever
        dicom = self.scans.open_dicom(series_uid, study_uid)  # first: refused before any search
        exclusions = search.exclusions_at(series_uid, center_xyz, options.include_own_patient)
        # Found once: the SR's size and SEG, and the type the ruler's Lung-RADS category takes.
        point = search.query_at(dicom, center_xyz, options, exclusions, find=True)
        found = point.found
        response = search.answer(dicom, series_uid, center_xyz, options, point, exclusions)
        files = assemble_report(
            dicom,
            center_xyz,
            found.region if found is not None else None,
            outcome(response),
            search.embedder.card,
            search.catalog.version,
            with_seg=with_seg,
            how=found.estimated_by if found is not None else "region growing",
        )
        return EncodedReport(files, from_pacs(dicom))

    def report_upload(
        self, cut: UploadPatch, k: int, filters: Filters, *, with_seg: bool = False
    ) -> EncodedReport:
        """The search of an uploaded DICOM series as an SR (and SEG), from the parser's headers.

        Raises:
            InputError: the parse kept no headers (not a report job).
        """
        if cut.headers is None:
            raise InputError("an SR of an upload needs the uploaded DICOM series' headers")
        search = self.retriever
        response = search.search_patch(cut, k, filters, series_uid=uploaded_series_uid(cut))
        files = assemble_report(
            cut.headers,
            cut.center_xyz,
            cut.region,
            outcome(response),
            search.embedder.card,
            search.catalog.version,
            with_seg=with_seg,
            how=estimated_by(cut.size_method) if cut.size_method else "region growing",
        )
        return EncodedReport(files, from_pacs=False)

    def check_can_store(self) -> Pacs:
        """The PACS to store reports in; InputError when none is configured."""
        if self.scans.pacs is None:
            raise InputError(
                "store=true stores the report in the PACS, and none is configured "
                "(NODULE_DICOMWEB_URL)"
            )
        return self.scans.pacs

    def store_report(self, report: EncodedReport) -> list[StoredInstance]:
        """Store a report in the PACS its series came from (STOW-RS), byte for byte as encoded.

        Raises:
            InputError: no PACS, or the report's series was read from files.
            PacsUnavailableError: the PACS refused it or cannot be reached.
        """
        pacs = self.check_can_store()
        if not report.from_pacs:
            raise InputError(
                "store=true stores the report in the PACS its series came from, and this series "
                "was read from files (give its study_uid to read it from the PACS)"
            )
        # Read back from the encoded bytes: the client writes a read dataset as it was read, so
        # the PACS receives exactly the bytes the caller gets.
        return pacs.store([pydicom.dcmread(io.BytesIO(part)) for part in report.files.parts])
