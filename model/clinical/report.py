"""The DICOM objects of one search: the SR (``clinical.sr``), the estimated mask's SEG.

One builder for the service (``POST /v1/reports/sr``) and the command line (``nodule-index
report``): both hand it an opened DICOM series, the query point and what the search found.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from model.clinical.measure import EstimatedBy, NoduleRegion, RulerMeasurement
from model.clinical.nodule_mask import FoundNodule, find_nodule
from model.clinical.seg import mask_segmentation, segment_reference
from model.clinical.sr import SearchFindings, SimilarCase, evidence_for, search_report, slice_point
from model.clinical.vote import UNKNOWN_MATCH, MatchState
from model.ct.dicom import HeaderSource, SliceHeaders
from model.ct.evidence import ReportHeaderError, check_evidence
from model.nn.card import ModelCard
from model.nn.embedder import Embedder


@dataclass(frozen=True)
class SearchOutcome:
    """What a search found: the neighbours as a report names them, the match state, the vote.

    A withheld vote (``match.withheld``) is not coded in the SR, whatever the numbers.
    """

    neighbors: Sequence[SimilarCase]
    malignant_probability: float | None
    vote_binary: int | None
    match: MatchState = UNKNOWN_MATCH
    measured: RulerMeasurement | None = None
    """The radiologist's own axes of the query nodule (the ruler), when given."""


@dataclass(frozen=True)
class ReportFiles:
    """The encoded objects (DICOM Part 10 bytes).

    ``seg`` is there when one was asked for and a mask could be grown.
    """

    sr: bytes
    seg: bytes | None

    @property
    def parts(self) -> list[bytes]:
        """The SR first, then the SEG."""
        return [self.sr] if self.seg is None else [self.sr, self.seg]


def software_version() -> str:
    """This package's version (the SEG's software versions)."""
    try:
        return version("nodule-search")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def encode(dataset: Dataset) -> bytes:
    """A dataset as a DICOM Part 10 file's bytes."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def build_report(
    source: HeaderSource,
    center_xyz: tuple[float, float, float],
    outcome: SearchOutcome,
    embedder: Embedder,
    index_version: str,
    *,
    with_seg: bool = False,
    patch: npt.NDArray[np.float32] | None = None,
    found: FoundNodule | None = None,
) -> ReportFiles:
    """The SR of a search at ``center_xyz`` (world mm, LPS) of a DICOM series, and its SEG.

    The size and mask come from the service's ``clinical.nodule_mask.find_nodule`` (the model's
    mask branch, region growing without one); with ``with_seg`` the mask is a SEG the SR
    references, when one was found. ``patch``: the point's patch, when already cut; ``found``:
    the nodule, when already found (the search's vector needed its size).

    Raises:
        MeasureError: the point lies outside the volume.
        ValueError: the series' headers cannot make a report (highdicom's checks).
    """
    if found is None:
        found = find_nodule(embedder, source, center_xyz, patch)
    return assemble_report(
        source,
        center_xyz,
        found.region if found is not None else None,
        outcome,
        embedder.card,
        index_version,
        with_seg=with_seg,
        how=found.estimated_by if found is not None else "region growing",
    )


def assemble_report(
    headers: SliceHeaders,
    center_xyz: tuple[float, float, float],
    region: NoduleRegion | None,
    outcome: SearchOutcome,
    card: ModelCard,
    index_version: str,
    *,
    with_seg: bool = False,
    how: EstimatedBy = "region growing",
) -> ReportFiles:
    """The SR (and with ``with_seg`` the SEG of ``region``) from the series' headers alone.

    ``how``: how ``region`` was found (the SR's method code, the SEG's algorithm).

    ``headers`` must hold the slices the model's patch spans (``clinical.sr.evidence_for``) and
    those ``region`` covers; ``region``: the measured nodule mask, grown or given (None: none).

    Raises:
        ReportHeaderError: the headers cannot make a report (``model.ct.evidence``, or highdicom's
            own checks); its message names the attribute, never a value.
    """
    evidence = evidence_for(headers, center_xyz, card.preprocessing)
    check_evidence(evidence)
    try:
        return _encoded(
            headers, evidence, center_xyz, region, outcome, card, index_version, with_seg, how
        )
    except ValueError as e:
        if isinstance(e, ReportHeaderError):
            raise
        # highdicom's own checks: its text may quote header values, so only its kind is said.
        raise ReportHeaderError(
            f"the queried series' headers cannot make a DICOM report ({type(e).__name__} in "
            "highdicom's checks)"
        ) from None


def _encoded(
    headers: SliceHeaders,
    evidence: list[Dataset],
    center_xyz: tuple[float, float, float],
    region: NoduleRegion | None,
    outcome: SearchOutcome,
    card: ModelCard,
    index_version: str,
    with_seg: bool,
    how: EstimatedBy,
) -> ReportFiles:
    """The SR and SEG of checked evidence, encoded."""
    seg = None
    if with_seg and region is not None:
        seg = mask_segmentation(headers, region, software_version(), how=how)
    findings = SearchFindings(
        center_xyz=center_xyz,
        frame_of_reference_uid=str(evidence[0].FrameOfReferenceUID),
        neighbors=outcome.neighbors,
        malignant_probability=outcome.malignant_probability,
        vote_binary=outcome.vote_binary,
        size=region.measurement if region is not None else None,
        model_fingerprint=card.fingerprint,
        index_version=index_version,
        segment=segment_reference(seg) if seg is not None else None,
        match=outcome.match,
        measured=outcome.measured,
        size_method=how,
        on_slice=slice_point(headers, center_xyz),
    )
    sr = search_report([*evidence, seg] if seg is not None else evidence, findings)
    return ReportFiles(encode(sr), encode(seg) if seg is not None else None)
