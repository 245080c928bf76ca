"""Similar-nodule search: patch -> embedding -> neighbours -> labels and a vote.

No FastAPI here: the routers call this, and tests may call it directly. Stored CTs are found by
series UID: first where the catalogue recorded them, then under the configured data root.
"""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import numpy.typing as npt
import pydicom
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from app.errors import InputError
from app.schemas import (
    CoordinateQuery,
    Filters,
    LabelOut,
    MapOut,
    MapPoint,
    MeasuredAxes,
    Neighbor,
    NoduleDetail,
    NoduleOut,
    QueryInfo,
    ScanList,
    ScanOut,
    ScanSummary,
    SearchResponse,
    SearchSize,
    SizeEstimate,
    SizeMeasured,
    ViewerLink,
    Vote,
)
from app.series import OpenSources, SeriesLocator
from model.clinical.labels import CHARACTERISTICS
from model.clinical.measure import (
    MASK_METHOD,
    MeasureError,
    NoduleMeasurement,
    estimated_by,
    ruler_measurement,
)
from model.clinical.nodule_mask import FoundNodule, find_nodule
from model.clinical.report import ReportFiles, SearchOutcome, assemble_report
from model.clinical.sr import SimilarCase, slice_point
from model.clinical.vote import (
    MatchState,
    four_class_shares,
    majority,
    malignant_probability,
    match_state,
)
from model.ct.dicom import DicomSeriesSource
from model.ct.dicomweb import DicomwebSeriesSource, Pacs, StoredInstance
from model.ct.open import open_source
from model.ct.pacs import parse_pacs_address
from model.ct.volume import VolumeSource
from model.nn.card import vector_parts
from model.nn.embedder import Embedder
from model.nn.network import part_similarity_matrix
from model.nn.profile import PROFILE_NAMES
from model.nn.query import QuerySize, grid_profile, query_vector
from model.preprocessing import CoordinateOutsideVolumeError, extract_patch
from model.store.catalog import Catalog, ScanNodules
from model.store.tables import Nodule, NoduleRead, Scan
from model.threads import ThreadPolicy
from model.uploads import UploadPatch

logger = logging.getLogger(__name__)
XYZ = tuple[float, float, float]

#: Catalogue rows kept in memory per served version (a few hundred bytes each).
ROWS_CACHED = 100_000
#: Catalogue scans whose patient and nodule spheres are kept (for the query's exclusions).
SCANS_CACHED = 10_000


@dataclass(frozen=True)
class EncodedReport:
    """A search's DICOM objects as encoded for the caller (Part 10 bytes)."""

    files: ReportFiles
    from_pacs: bool
    """Its series was read from the PACS (so it can be stored there)."""


class NotFoundError(KeyError):
    """An unknown series or nodule id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


@dataclass(frozen=True)
class _Row:
    nodule: NoduleOut
    labelled: bool
    embedding_row: int


def _label_out(nodule: Nodule) -> LabelOut | None:
    if nodule.label is None:
        return None
    label = nodule.label
    return LabelOut(
        ratings=list(label.ratings),
        n_readers=label.n_readers,
        mean=label.mean_malignancy,
        label_binary=label.label_binary,
        label_4class=label.label_4class,
    )


def _labelled(nodule: Nodule) -> bool:
    return nodule.label is not None and nodule.label.label_binary is not None


def _nodule_out(nodule: Nodule) -> NoduleOut:
    return NoduleOut(
        id=nodule.id,
        series_uid=nodule.series_uid,
        patient_id=nodule.scan.patient_id,
        center_xyz=nodule.center_xyz,
        diameter_mm=nodule.diameter_mm,
        labels=_label_out(nodule),
    )


def median_characteristics(reads: list[NoduleRead]) -> dict[str, float] | None:
    """The readers' median of each LIDC characteristic (those some reader rated); None: no read."""
    out: dict[str, float] = {}
    for name in CHARACTERISTICS:
        column = "internal_structure" if name == "internalStructure" else name
        values = [v for r in reads if (v := getattr(r, column)) is not None]
        if values:
            out[name] = float(np.median(values))
    return out or None


def _outcome(response: SearchResponse) -> SearchOutcome:
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


def vote(neighbors: list[Neighbor]) -> Vote:
    """Similarity-weighted malignancy vote over the labelled neighbours (``clinical.vote``)."""
    labelled = [n.labels for n in neighbors if n.labels and n.labels.label_binary is not None]
    if not labelled:
        return Vote(malignant_share=None, binary=None, four_class={}, n_labelled=0)
    sims = [n.similarity for n in neighbors if n.labels and n.labels.label_binary is not None]
    binary = [float(label.label_binary or 0) for label in labelled]
    probability = float(malignant_probability(sims, binary))
    return Vote(
        malignant_share=probability,
        binary=int(majority(binary, probability)),
        four_class=four_class_shares([int(label.label_4class or 0) for label in labelled]),
        n_labelled=len(labelled),
    )


@dataclass(frozen=True)
class PointOptions:
    """How a point query is answered: the request's options, typed once."""

    k: int
    filters: Filters
    estimate_size: bool = False
    include_own_patient: bool = False
    measured: MeasuredAxes | None = None

    @classmethod
    def of(cls, query: CoordinateQuery) -> PointOptions:
        """The options of a coordinate request body."""
        return cls(
            k=query.k,
            filters=query.filters,
            estimate_size=query.estimate_size,
            include_own_patient=query.include_own_patient,
            measured=query.measured_axes_mm,
        )


@dataclass(frozen=True)
class PointQuery:
    """A point's patch, its nodule (when found), its search vector and the size it was read at."""

    patch: npt.NDArray[np.float32]
    vector: npt.NDArray[np.float32]
    found: FoundNodule | None
    size: QuerySize


@dataclass(frozen=True)
class Exclusions:
    """What a query leaves out of its neighbours besides the request's filters."""

    query_nodule_id: int | None = None
    """The catalogue nodule at the query point (it is the query)."""
    nodule_ids: frozenset[int] = frozenset()
    own_patient_id: str | None = None
    """The queried scan's patient, left out (the paper's protocol); None: nobody's."""

    @property
    def patient_ids(self) -> frozenset[str]:
        """Patients whose nodules are left out."""
        return frozenset() if self.own_patient_id is None else frozenset({self.own_patient_id})


NO_EXCLUSIONS = Exclusions()


def _measured(axes: MeasuredAxes | None, estimate: NoduleMeasurement | None) -> SizeMeasured | None:
    """The user's axes as answered, with the estimate's type for the Lung-RADS category."""
    if axes is None:
        return None
    kind = estimate.nodule_type if estimate is not None else None
    return SizeMeasured.of(ruler_measurement(axes.long_axis_mm, axes.short_axis_mm, kind))


def uploaded_series_uid(cut: UploadPatch) -> str | None:
    """The series UID of an uploaded DICOM series, from the headers the parser kept (or None)."""
    if cut.headers is None or not cut.headers.headers:
        return None
    first = next(iter(cut.headers.headers.values()))
    uid = first.get("SeriesInstanceUID")
    return str(uid) if uid else None


class Retriever:
    """Owns the embedder and the opened catalogue version."""

    def __init__(
        self,
        embedder: Embedder,
        catalog: Catalog,
        locator: SeriesLocator,
        max_k: int,
        sources: OpenSources | None = None,
        pacs: Pacs | None = None,
        threads: ThreadPolicy | None = None,
    ) -> None:
        self.embedder = embedder
        self.catalog = catalog
        self.locator = locator
        self.sources = sources or OpenSources(capacity=0)
        self.max_k = max_k
        self.threads = threads or ThreadPolicy()
        self.pacs = pacs
        # A catalogue version never changes once published, so its rows can be kept: a query
        # then costs no SQL at all for the neighbours it has seen before.
        self._rows_cache: OrderedDict[int, _Row] = OrderedDict()
        self._rows_capacity = ROWS_CACHED
        self._scan_paths: dict[str, Path | None] = {}
        self._scans_cache: OrderedDict[str, ScanNodules] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._map: MapOut | None = None
        self.parts = vector_parts(embedder.card)
        # Read once: a version's threshold never changes (None for versions built without one).
        self.match_threshold = catalog.match_threshold

    @property
    def ready(self) -> bool:
        """Model and index agree (the index was built with this model)."""
        return self.embedder.card.fingerprint == self.catalog.model_fingerprint

    def _recorded_path(self, scan: Scan) -> Path:
        """Where the catalogue recorded a scan, moved along with the catalogue if it moved."""
        return self.catalog.manifest.relocated(Path(scan.source_path), self.catalog.index_dir)

    def open_series(self, series_uid: str, study_uid: str | None = None) -> VolumeSource:
        """The CT of a series, for region reads.

        With ``study_uid`` the series is read from the configured PACS. Without, from the path the
        catalogue recorded, then the data root, then (when one is configured) the PACS.

        Raises:
            NotFoundError: the series is nowhere to be found.
            InputError: a study UID without a configured PACS.
            SeriesNotInPacsError / PacsUnavailableError: from the PACS.
        """
        if study_uid is not None:
            if self.pacs is None:
                raise InputError(
                    "study_uid names a PACS study, but no PACS is configured (NODULE_DICOMWEB_URL)"
                )
            return DicomwebSeriesSource(self.pacs, study_uid, series_uid)
        if series_uid in self._scan_paths:
            path = self._scan_paths[series_uid]
        else:
            with self.catalog.sessions() as session:
                scan = session.execute(
                    select(Scan).where(Scan.series_uid == series_uid)
                ).scalar_one_or_none()
                path = self._recorded_path(scan) if scan is not None else None
            if path is not None:  # unknown UIDs are not remembered: they are unbounded
                with self._cache_lock:
                    self._scan_paths[series_uid] = path
        if path is not None and self.pacs is not None and parse_pacs_address(str(path)):
            return open_source(path, self.pacs)
        if path is None or not path.exists():
            path = self.locator.find(series_uid)
        if path is not None:
            return self.sources.open(path, series_uid if path.is_dir() else None)
        if self.pacs is not None:
            return DicomwebSeriesSource(self.pacs, None, series_uid)
        raise NotFoundError(f"series {series_uid} is not a stored CT")

    def query_at(
        self,
        source: VolumeSource,
        center_xyz: tuple[float, float, float],
        options: PointOptions,
        exclusions: Exclusions,
        *,
        find: bool = False,
    ) -> PointQuery:
        """The patch at a world point, its nodule (when wanted) and its search vector.

        The vector's size (``model.nn.query``): the user's axes, else the recorded diameter of the
        catalogue nodule at the point, else the estimate. The nodule is found when the request
        wants a size (or ``find``), or when the vector needs an estimate.
        """
        patch = extract_patch(source, center_xyz, self.embedder.card.preprocessing)
        measured = (
            (options.measured.long_axis_mm, options.measured.short_axis_mm)
            if options.measured is not None
            else None
        )
        recorded = self._recorded_diameter(exclusions.query_nodule_id)
        needs_estimate = self.embedder.uses_profile and measured is None and recorded is None
        found = None
        if find or options.estimate_size or options.measured is not None or needs_estimate:
            found = self.find_nodule(source, center_xyz, patch)
        estimated = found.region.measurement.mean_diameter_mm if found is not None else None
        size = QuerySize.choose(measured, recorded, estimated)
        vector = query_vector(self.embedder, source, center_xyz, patch, size)
        return PointQuery(patch, vector, found, size)

    def _recorded_diameter(self, nodule_id: int | None) -> float | None:
        """The recorded diameter (mm) of a catalogue nodule; None for no nodule."""
        if nodule_id is None:
            return None
        rows = self._rows([nodule_id])
        return rows[nodule_id].nodule.diameter_mm if nodule_id in rows else None

    def find_nodule(
        self,
        source: VolumeSource,
        center_xyz: tuple[float, float, float],
        patch: npt.NDArray[np.float32] | None = None,
    ) -> FoundNodule | None:
        """The nodule at a point: the model's mask branch, or region growing without one.

        The same function the indexer measures its catalogue with (``model.clinical.nodule_mask``).
        """
        return find_nodule(self.embedder, source, center_xyz, patch)

    def _rows(self, ids: list[int]) -> dict[int, _Row]:
        """Rows of catalogue nodules by id (ids not in the catalogue are absent)."""
        found: dict[int, _Row] = {}
        with self._cache_lock:
            for i in ids:
                row = self._rows_cache.get(i)
                if row is not None:
                    self._rows_cache.move_to_end(i)
                    found[i] = row
        missing = [i for i in ids if i not in found]
        if not missing:
            return found
        with self.catalog.sessions() as session:
            query = (
                select(Nodule)
                .where(Nodule.id.in_(missing))
                .options(selectinload(Nodule.label), selectinload(Nodule.scan))
            )
            fetched = {
                n.id: _Row(_nodule_out(n), _labelled(n), n.embedding_row)
                for n in session.execute(query).scalars()
            }
        with self._cache_lock:
            for i, row in fetched.items():
                self._rows_cache[i] = row
            while len(self._rows_cache) > self._rows_capacity:
                self._rows_cache.popitem(last=False)
        return {**found, **fetched}

    @staticmethod
    def _passes(row: _Row, filters: Filters, exclude_patients: frozenset[str]) -> bool:
        n = row.nodule
        if n.patient_id is not None and n.patient_id in exclude_patients:
            return False
        if filters.exclude_patient_id is not None and n.patient_id == filters.exclude_patient_id:
            return False
        if filters.min_diameter_mm is not None and n.diameter_mm < filters.min_diameter_mm:
            return False
        if filters.max_diameter_mm is not None and n.diameter_mm > filters.max_diameter_mm:
            return False
        return not (filters.labelled_only and not row.labelled)

    def neighbors(
        self,
        vector: npt.NDArray[np.float32],
        k: int,
        filters: Filters,
        exclusions: Exclusions = NO_EXCLUSIONS,
    ) -> list[Neighbor]:
        """The ``k`` most similar catalogue nodules that pass the filters and exclusions."""
        if k > self.max_k:
            raise InputError(f"k: must be at most {self.max_k} (NODULE_MAX_K)")
        total = int(self.catalog.index.ntotal)
        fetch = min(total, k + len(exclusions.nodule_ids) + 16)
        while True:
            # OpenMP thread counts are per thread: set in the worker thread that searches, or
            # FAISS starts one thread per core for every concurrent request.
            with self.threads.searching():
                scores, ids = self.catalog.search(vector[None].astype(np.float32), max(fetch, 1))
            pairs = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
            rows = self._rows([i for i, _ in pairs])
            kept = [
                (i, s)
                for i, s in pairs
                if i in rows
                and i not in exclusions.nodule_ids
                and self._passes(rows[i], filters, exclusions.patient_ids)
            ]
            if len(kept) >= k or fetch >= total:
                return self._as_neighbors(vector, kept[:k], rows)
            fetch = min(total, fetch * 4)

    def _as_neighbors(
        self,
        vector: npt.NDArray[np.float32],
        kept: list[tuple[int, float]],
        rows: dict[int, _Row],
    ) -> list[Neighbor]:
        """The answer's neighbours, each with its per-level similarity (one numpy pass)."""
        if not kept:
            return []
        stored = np.asarray(
            self.catalog.embeddings[[rows[i].embedding_row for i, _ in kept]], dtype=np.float32
        )
        levels = np.round(part_similarity_matrix(vector, stored, self.parts), 4)
        return [
            Neighbor(**rows[i].nodule.model_dump(), similarity=s, level_similarity=list(sims))
            for (i, s), sims in zip(kept, levels.tolist(), strict=True)
        ]

    def respond(
        self,
        vector: npt.NDArray[np.float32],
        k: int,
        filters: Filters,
        query: dict[str, Any],
        exclusions: Exclusions = NO_EXCLUSIONS,
        size_estimate: SizeEstimate | None = None,
        size: QuerySize | None = None,
    ) -> SearchResponse:
        """Neighbours and vote as the API returns them (``size``: what the vector was read at)."""
        neighbors = self.neighbors(vector, k, filters, exclusions)
        # The vote rests on the returned neighbours, so the nearest of them decides whether the
        # catalogue holds anything close to the query (``model.store.calibration``).
        threshold = self.match_threshold.value if self.match_threshold is not None else None
        state = match_state(neighbors[0].similarity if neighbors else None, threshold)
        for neighbor in neighbors:
            neighbor.weak_match = state.weak(neighbor.similarity)
        result = vote(neighbors)
        result.withheld = state.withheld
        return SearchResponse(
            query=QueryInfo(
                index_version=self.catalog.version,
                levels=[p.name for p in self.parts],
                best_similarity=state.best_similarity,
                match_threshold=threshold,
                close_match=state.close_match,
                excluded_patient_id=exclusions.own_patient_id,
                # Only where the vector reads a size: a features-only vector is not searched
                # "at" any size, and the answer must not say it is.
                size_for_search=(
                    SearchSize.of(size) if size is not None and self.embedder.uses_profile else None
                ),
                **query,
            ),
            neighbors=neighbors,
            vote=result,
            size_estimate=size_estimate,
        )

    def search_coordinate(
        self,
        series_uid: str,
        center_xyz: tuple[float, float, float],
        options: PointOptions,
        study_uid: str | None = None,
    ) -> SearchResponse:
        """Search by a world point in a stored CT series (or one in the PACS)."""
        source = self.open_series(series_uid, study_uid)
        return self.search_source(source, series_uid, center_xyz, options)

    def search_source(
        self,
        source: VolumeSource,
        series_uid: str,
        center_xyz: tuple[float, float, float],
        options: PointOptions,
    ) -> SearchResponse:
        """Search by a world point of an opened series.

        When the series is a catalogue scan, the nodule whose recorded radius holds the point is
        the query (``query.nodule_id``, never a neighbour) and, unless
        ``options.include_own_patient``, the scan's patient's nodules are left out.
        """
        exclusions = self.exclusions_at(series_uid, center_xyz, options.include_own_patient)
        point = self.query_at(source, center_xyz, options, exclusions)
        return self._answer(source, series_uid, center_xyz, options, point, exclusions)

    def _answer(
        self,
        source: VolumeSource,
        series_uid: str,
        center_xyz: tuple[float, float, float],
        options: PointOptions,
        point: PointQuery,
        exclusions: Exclusions,
    ) -> SearchResponse:
        """The answer at a point whose vector and nodule (if wanted) are known."""
        index_zyx = tuple(float(v) for v in source.geometry.world_to_index_zyx(center_xyz))
        found = point.found
        response = self.respond(
            point.vector,
            options.k,
            options.filters,
            {
                "center_xyz": center_xyz,
                "index_zyx": index_zyx,
                "series_uid": series_uid,
                "nodule_id": exclusions.query_nodule_id,
                "own_patient_included": options.include_own_patient,
            },
            exclusions,
            size_estimate=(
                SizeEstimate.of(
                    found.region.measurement,
                    found.method,
                    superseded=options.measured is not None,
                )
                if options.estimate_size and found is not None
                else None
            ),
            size=point.size,
        )
        response.size_measured = _measured(
            options.measured, found.region.measurement if found is not None else None
        )
        return response

    def exclusions_at(
        self, series_uid: str, center_xyz: tuple[float, float, float], include_own_patient: bool
    ) -> Exclusions:
        """What a point query in ``series_uid`` leaves out: the nodule there, its patient's."""
        scan = self._scan_nodules(series_uid)
        if scan is None:
            return NO_EXCLUSIONS
        at_point = scan.nodule_at(center_xyz)
        patient = scan.patient_id
        own = None if include_own_patient or patient is None else patient
        return Exclusions(
            query_nodule_id=at_point,
            nodule_ids=frozenset() if at_point is None else frozenset({at_point}),
            own_patient_id=own,
        )

    def _scan_nodules(self, series_uid: str) -> ScanNodules | None:
        """A catalogue scan's patient and nodule spheres (None: not a catalogue scan).

        Kept per series: a published version never changes, so repeated queries on one study
        cost no SQL. Unknown UIDs are not kept (they are unbounded).
        """
        with self._cache_lock:
            if series_uid in self._scans_cache:
                self._scans_cache.move_to_end(series_uid)
                return self._scans_cache[series_uid]
        found = self.catalog.scan_nodules(series_uid)
        if found is None:
            return None
        with self._cache_lock:
            self._scans_cache[series_uid] = found
            while len(self._scans_cache) > SCANS_CACHED:
                self._scans_cache.popitem(last=False)
        return found

    def upload_vector(
        self, cut: UploadPatch, exclusions: Exclusions
    ) -> tuple[npt.NDArray[np.float32], QuerySize]:
        """An upload's search vector and the size it was read at (``model.nn.query``).

        The uploaded mask's mean diameter is the user's measurement; a catalogue series'
        nodule at the point has its recorded diameter; else the nodule is found on the profile
        grid the parser cut (the service's method) and its estimate taken.
        """
        measured = (
            cut.size.mean_diameter_mm if cut.size_method == MASK_METHOD and cut.size else None
        )
        recorded = self._recorded_diameter(exclusions.query_nodule_id)
        estimated = None
        grid = cut.profile_volume()
        if (
            self.embedder.uses_profile
            and measured is None
            and recorded is None
            and grid is not None
        ):
            try:
                found = self.find_nodule(grid, cut.center_xyz, cut.patch)
            except MeasureError:
                found = None
            estimated = found.region.measurement.mean_diameter_mm if found is not None else None
        size = QuerySize.choose(
            (measured, measured) if measured is not None else None, recorded, estimated
        )
        profile = np.full((1, len(PROFILE_NAMES)), np.nan)
        if self.embedder.uses_profile and cut.profile_hu is not None:
            # The parser's grid is the profile's own: read it, rather than resample it again.
            profile = grid_profile(cut.profile_hu, size)
        return self.embedder.vectors(cut.patch[None], profile)[0], size

    def upload_exclusions(
        self, series_uid: str | None, center_xyz: tuple[float, float, float]
    ) -> Exclusions:
        """An upload of a catalogue series leaves out the same as a point query in it does."""
        if series_uid is None:
            return NO_EXCLUSIONS
        return self.exclusions_at(series_uid, center_xyz, include_own_patient=False)

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
        dicom = self._dicom_series(series_uid, study_uid)  # first: refused before any search
        exclusions = self.exclusions_at(series_uid, center_xyz, options.include_own_patient)
        # Found once: the SR's size and SEG, and the type the ruler's Lung-RADS category takes.
        point = self.query_at(dicom, center_xyz, options, exclusions, find=True)
        found = point.found
        response = self._answer(dicom, series_uid, center_xyz, options, point, exclusions)
        files = assemble_report(
            dicom,
            center_xyz,
            found.region if found is not None else None,
            _outcome(response),
            self.embedder.card,
            self.catalog.version,
            with_seg=with_seg,
            how=found.estimated_by if found is not None else "region growing",
        )
        return EncodedReport(files, isinstance(dicom, DicomwebSeriesSource))

    def report_upload(
        self, cut: UploadPatch, k: int, filters: Filters, *, with_seg: bool = False
    ) -> EncodedReport:
        """The search of an uploaded DICOM series as an SR (and SEG), from the parser's headers.

        Raises:
            InputError: the parse kept no headers (not a report job).
        """
        if cut.headers is None:
            raise InputError("an SR of an upload needs the uploaded DICOM series' headers")
        exclusions = self.upload_exclusions(uploaded_series_uid(cut), cut.center_xyz)
        vector, size = self.upload_vector(cut, exclusions)
        query = {"center_xyz": cut.center_xyz, "nodule_id": exclusions.query_nodule_id}
        response = self.respond(vector, k, filters, query, exclusions, size=size)
        files = assemble_report(
            cut.headers,
            cut.center_xyz,
            cut.region,
            _outcome(response),
            self.embedder.card,
            self.catalog.version,
            with_seg=with_seg,
            how=estimated_by(cut.size_method) if cut.size_method else "region growing",
        )
        return EncodedReport(files, from_pacs=False)

    def check_can_store(self) -> Pacs:
        """The PACS to store reports in; InputError when none is configured."""
        if self.pacs is None:
            raise InputError(
                "store=true stores the report in the PACS, and none is configured "
                "(NODULE_DICOMWEB_URL)"
            )
        return self.pacs

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

    def _dicom_series(
        self, series_uid: str, study_uid: str | None
    ) -> DicomSeriesSource | DicomwebSeriesSource:
        source = self.open_series(series_uid, study_uid)
        if isinstance(source, DicomSeriesSource | DicomwebSeriesSource):
            return source
        folder = self.locator.find_dicom(series_uid)
        if folder is None:
            raise InputError(self._no_dicom_reason())
        return DicomSeriesSource(folder, series_uid)

    def _no_dicom_reason(self) -> str:
        """Why no DICOM folder of a series was found: the data root's state names the cause."""
        root = self.locator.root
        if root is None:
            return (
                "an SR belongs to a DICOM study; this series was read from an image file and no "
                "data root is configured (NODULE_DATA_DIR) to find its DICOM folder in"
            )
        if not root.is_dir():
            return (
                "an SR belongs to a DICOM study; this series was read from an image file and "
                "the data root (NODULE_DATA_DIR) does not exist on the server, so its DICOM "
                "folder cannot be looked for"
            )
        return (
            "an SR belongs to a DICOM study, and this series is stored as an image file "
            "(MetaImage or NIfTI) with no DICOM folder of it under the data root"
        )

    def is_dicom(self, series_uid: str, recorded: Path | None) -> bool:
        """Whether a series is stored as DICOM (a folder, the PACS, or a DICOM folder found).

        ``recorded``: where the catalogue says it lies (relocated), if it says.
        """
        if recorded is not None and (recorded.is_dir() or parse_pacs_address(str(recorded))):
            return True
        return self.locator.find_dicom(series_uid) is not None

    def nodule(self, nodule_id: int) -> NoduleOut:
        """One catalogue nodule.

        Raises:
            NotFoundError: no such id.
        """
        rows = self._rows([nodule_id])
        if nodule_id not in rows:
            raise NotFoundError(f"nodule {nodule_id} is not in the catalogue")
        return rows[nodule_id].nodule

    def nodule_detail(self, nodule_id: int, *, estimate_size: bool = False) -> NoduleDetail:
        """One catalogue nodule with its readers' median characteristics (and a size estimate).

        Raises:
            NotFoundError: no such id.
        """
        nodule = self.nodule(nodule_id)
        with self.catalog.sessions() as session:
            reads = session.execute(
                select(NoduleRead).where(NoduleRead.nodule_id == nodule_id)
            ).scalars()
            characteristics = median_characteristics(list(reads))
        size = None
        if estimate_size:
            found = self.find_nodule(self.open_series(nodule.series_uid), nodule.center_xyz)
            if found is not None:
                size = SizeEstimate.of(found.region.measurement, found.method)
        return NoduleDetail(
            **nodule.model_dump(), characteristics=characteristics, size_estimate=size
        )

    def similar_to(
        self, nodule_id: int, k: int, filters: Filters, *, include_own_patient: bool = False
    ) -> SearchResponse:
        """Neighbours of an indexed nodule, from its stored vector.

        Never itself, and unless ``include_own_patient`` none of its patient's (as a coordinate
        search in its scan leaves out).
        """
        nodule = self.nodule(nodule_id)
        vector = self.catalog.vector_of(nodule_id)
        own = None if include_own_patient else nodule.patient_id
        return self.respond(
            vector,
            k,
            filters,
            {
                "center_xyz": nodule.center_xyz,
                "series_uid": nodule.series_uid,
                "nodule_id": nodule_id,
                "own_patient_included": include_own_patient,
            },
            Exclusions(nodule_id, frozenset({nodule_id}), own_patient_id=own),
        )

    def scans(self, limit: int, offset: int) -> ScanList:
        """A page of the catalogue's scans, by series UID."""
        with self.catalog.sessions() as session:
            total = session.scalar(select(func.count()).select_from(Scan)) or 0
            counts = (
                select(Scan, func.count(Nodule.id))
                .outerjoin(Nodule, Nodule.scan_id == Scan.id)
                .group_by(Scan.id)
                .order_by(Scan.series_uid)
                .limit(limit)
                .offset(offset)
            )
            rows = [
                ScanSummary(
                    series_uid=scan.series_uid,
                    patient_id=scan.patient_id,
                    n_nodules=n,
                    dicom=self.is_dicom(scan.series_uid, self._recorded_path(scan)),
                )
                for scan, n in session.execute(counts).all()
            ]
        return ScanList(total=int(total), scans=rows)

    def scan(self, series_uid: str) -> ScanOut:
        """A stored series' geometry and its catalogue nodules.

        Raises:
            NotFoundError: the series is neither in the catalogue nor under the data root.
        """
        source = self.open_series(series_uid)
        with self.catalog.sessions() as session:
            ids = list(
                session.execute(
                    select(Nodule.id).where(Nodule.series_uid == series_uid).order_by(Nodule.id)
                ).scalars()
            )
            scan = session.execute(
                select(Scan).where(Scan.series_uid == series_uid)
            ).scalar_one_or_none()
            patient = scan.patient_id if scan is not None else None
            recorded = self._recorded_path(scan) if scan is not None else None
        rows = self._rows(ids)
        dicom = isinstance(source, DicomSeriesSource | DicomwebSeriesSource) or self.is_dicom(
            series_uid, recorded
        )
        g = source.geometry
        low, high = g.extent_world_xyz()
        return ScanOut(
            series_uid=series_uid,
            patient_id=patient,
            extent_min_xyz=(float(low[0]), float(low[1]), float(low[2])),
            extent_max_xyz=(float(high[0]), float(high[1]), float(high[2])),
            spacing_xyz=(
                float(g.spacing_xyz[0]),
                float(g.spacing_xyz[1]),
                float(g.spacing_xyz[2]),
            ),
            size_xyz=(int(g.size_xyz[0]), int(g.size_xyz[1]), int(g.size_xyz[2])),
            nodules=[rows[i].nodule for i in ids if i in rows],
            dicom=dicom,
            from_pacs=isinstance(source, DicomwebSeriesSource),
        )

    def viewer_link(self, series_uid: str, center_xyz: XYZ, ohif_url: str | None) -> ViewerLink:
        """Where an OHIF Viewer over the PACS opens a PACS series at the slice through a point.

        Raises:
            NotFoundError: no OHIF Viewer is configured, or the series is nowhere.
            InputError: the series is not read from the PACS (OHIF shows the PACS's studies).
            CoordinateOutsideVolumeError: no slice of the series is through the point.
        """
        if ohif_url is None:
            raise NotFoundError("no OHIF Viewer is configured (NODULE_OHIF_URL)")
        source = self.open_series(series_uid)
        if not isinstance(source, DicomwebSeriesSource):
            raise InputError(
                "this series is not read from the PACS, so an OHIF Viewer over the PACS cannot "
                "show it"
            )
        on_slice = slice_point(source, center_xyz)
        if on_slice is None:
            raise CoordinateOutsideVolumeError("no slice of the series passes through the point")
        query = urlencode(
            {
                "StudyInstanceUIDs": on_slice.study_uid,
                "SeriesInstanceUIDs": on_slice.series_uid,
                "initialSOPInstanceUID": on_slice.sop_instance_uid,
            }
        )
        return ViewerLink(
            url=f"{ohif_url}/viewer?{query}",
            study_uid=on_slice.study_uid,
            series_uid=on_slice.series_uid,
            sop_instance_uid=on_slice.sop_instance_uid,
        )

    def example_point(self, *, dicom: bool = False) -> tuple[str, XYZ] | None:
        """A catalogue nodule's series and centre, for the API docs' examples (None: none).

        ``dicom``: the first nodule of a series stored as DICOM (an SR can be made there).
        """
        with self.catalog.sessions() as session:
            query = select(Nodule).options(selectinload(Nodule.scan)).order_by(Nodule.id)
            for nodule in session.execute(query.limit(1 if not dicom else 10_000)).scalars():
                scan = nodule.scan
                if not dicom or self.is_dicom(scan.series_uid, self._recorded_path(scan)):
                    return nodule.series_uid, nodule.center_xyz
        return None

    def map_points(self) -> MapOut:
        """Every nodule's 2-D map position (none when the version has no map)."""
        if self._map is None:
            with self.catalog.sessions() as session:
                query = (
                    select(Nodule)
                    .where(Nodule.map_x.is_not(None))
                    .options(selectinload(Nodule.label))
                    .order_by(Nodule.id)
                )
                points = [
                    MapPoint(
                        id=n.id,
                        x=float(n.map_x or 0.0),
                        y=float(n.map_y or 0.0),
                        diameter_mm=n.diameter_mm,
                        label_binary=n.label.label_binary if n.label else None,
                        label_4class=n.label.label_4class if n.label else None,
                    )
                    for n in session.execute(query).scalars()
                ]
            self._map = MapOut(index_version=self.catalog.version, points=points)
        return self._map
