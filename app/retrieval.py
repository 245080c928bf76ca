"""Similar-nodule search: patch -> search vector -> neighbours -> labels and a vote.

No FastAPI here: the routers call this, and tests may call it directly. Stored CTs are opened
through the scan door (``app.scans``); the catalogue's rows come from ``app.catalogue``; the
search vector is ``model.nn.query``'s.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.catalogue import CatalogueRows, NoduleRow
from app.errors import InputError
from app.preview import patch_preview_png
from app.scans import ScanDoor
from app.schemas import (
    XYZ,
    CoordinateQuery,
    Filters,
    MeasuredAxes,
    Neighbor,
    QueryInfo,
    SearchResponse,
    SearchSize,
    SizeEstimate,
    SizeMeasured,
    Vote,
)
from app.uploads.parse import UploadPatch
from model.clinical.measure import (
    MASK_METHOD,
    MeasureError,
    NoduleMeasurement,
    ruler_measurement,
)
from model.clinical.nodule_mask import FoundNodule, find_nodule
from model.clinical.vote import (
    four_class_shares,
    majority,
    malignant_probability,
    match_state,
)
from model.ct.volume import VolumeSource
from model.nn.card import vector_parts
from model.nn.embedder import Embedder
from model.nn.network import part_similarity_matrix
from model.nn.profile import PROFILE_NAMES
from model.nn.query import QuerySize, grid_profile, query_vector
from model.preprocessing import extract_patch
from model.threads import ThreadPolicy

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class QueryPoint:
    """What was queried, as the answer's ``query`` repeats it (``QueryInfo``'s own fields)."""

    center_xyz: XYZ | None = None
    index_zyx: XYZ | None = None
    series_uid: str | None = None
    nodule_id: int | None = None
    own_patient_included: bool = False
    preview_png_base64: str | None = None


class Retriever:
    """The search of one served catalogue version: a query's vector, its neighbours, the vote.

    Queries come as a point of a stored series (``search_coordinate``, opened through the scan
    door), an opened series (``search_source``), an uploaded patch (``search_patch``) or a
    catalogue nodule (``similar_to``).
    """

    def __init__(
        self,
        embedder: Embedder,
        rows: CatalogueRows,
        scans: ScanDoor,
        max_k: int,
        threads: ThreadPolicy | None = None,
    ) -> None:
        self.embedder = embedder
        self.rows = rows
        self.catalog = rows.catalog
        self.scans = scans
        self.max_k = max_k
        self.threads = threads or ThreadPolicy()
        self.parts = vector_parts(embedder.card)
        # Read once: a version's threshold never changes (None for versions built without one).
        self.match_threshold = self.catalog.match_threshold

    @property
    def ready(self) -> bool:
        """Model and index agree (the index was built with this model)."""
        return self.embedder.card.fingerprint == self.catalog.model_fingerprint

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
        recorded = self.rows.recorded_diameter(exclusions.query_nodule_id)
        needs_estimate = self.embedder.uses_profile and measured is None and recorded is None
        found = None
        if find or options.estimate_size or options.measured is not None or needs_estimate:
            found = self.find_nodule(source, center_xyz, patch)
        estimated = found.region.measurement.mean_diameter_mm if found is not None else None
        size = QuerySize.choose(measured, recorded, estimated)
        vector = query_vector(self.embedder, source, center_xyz, patch, size)
        return PointQuery(patch, vector, found, size)

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

    @staticmethod
    def _passes(row: NoduleRow, filters: Filters, exclude_patients: frozenset[str]) -> bool:
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
            rows = self.rows.rows([i for i, _ in pairs])
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
        rows: dict[int, NoduleRow],
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
        point: QueryPoint,
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
                center_xyz=point.center_xyz,
                index_zyx=point.index_zyx,
                series_uid=point.series_uid,
                nodule_id=point.nodule_id,
                own_patient_included=point.own_patient_included,
                preview_png_base64=point.preview_png_base64,
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
        source = self.scans.open(series_uid, study_uid)
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
        return self.answer(source, series_uid, center_xyz, options, point, exclusions)

    def answer(
        self,
        source: VolumeSource,
        series_uid: str,
        center_xyz: tuple[float, float, float],
        options: PointOptions,
        point: PointQuery,
        exclusions: Exclusions,
    ) -> SearchResponse:
        """The answer at a point whose vector and nodule (if wanted) are known."""
        iz, iy, ix = (float(v) for v in source.geometry.world_to_index_zyx(center_xyz))
        found = point.found
        response = self.respond(
            point.vector,
            options.k,
            options.filters,
            QueryPoint(
                center_xyz=center_xyz,
                index_zyx=(iz, iy, ix),
                series_uid=series_uid,
                nodule_id=exclusions.query_nodule_id,
                own_patient_included=options.include_own_patient,
            ),
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
        scan = self.rows.scan_nodules(series_uid)
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

    def search_patch(
        self,
        cut: UploadPatch,
        k: int,
        filters: Filters,
        *,
        series_uid: str | None = None,
        preview: bool = False,
    ) -> SearchResponse:
        """Search by an uploaded CT's patch, as the upload parser cut it.

        ``series_uid``: the uploaded series, when known (a catalogue series leaves out what a
        point query in it does). ``preview``: the answer also shows the query patch's slices.
        """
        exclusions = self._patch_exclusions(series_uid, cut.center_xyz)
        vector, size = self._patch_vector(cut, exclusions)
        found = None
        if cut.size is not None and cut.size_method is not None:
            found = SizeEstimate.of(cut.size, cut.size_method)
        point = QueryPoint(
            center_xyz=cut.center_xyz,
            index_zyx=cut.index_zyx,
            nodule_id=exclusions.query_nodule_id,
            preview_png_base64=(
                base64.b64encode(patch_preview_png(cut.patch)).decode() if preview else None
            ),
        )
        return self.respond(vector, k, filters, point, exclusions, size_estimate=found, size=size)

    def _patch_vector(
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
        recorded = self.rows.recorded_diameter(exclusions.query_nodule_id)
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

    def _patch_exclusions(
        self, series_uid: str | None, center_xyz: tuple[float, float, float]
    ) -> Exclusions:
        """An upload of a catalogue series leaves out the same as a point query in it does."""
        if series_uid is None:
            return NO_EXCLUSIONS
        return self.exclusions_at(series_uid, center_xyz, include_own_patient=False)

    def similar_to(
        self, nodule_id: int, k: int, filters: Filters, *, include_own_patient: bool = False
    ) -> SearchResponse:
        """Neighbours of an indexed nodule, from its stored vector.

        Never itself, and unless ``include_own_patient`` none of its patient's (as a coordinate
        search in its scan leaves out).
        """
        nodule = self.rows.nodule(nodule_id)
        vector = self.catalog.vector_of(nodule_id)
        own = None if include_own_patient else nodule.patient_id
        return self.respond(
            vector,
            k,
            filters,
            QueryPoint(
                center_xyz=nodule.center_xyz,
                series_uid=nodule.series_uid,
                nodule_id=nodule_id,
                own_patient_included=include_own_patient,
            ),
            Exclusions(nodule_id, frozenset({nodule_id}), own_patient_id=own),
        )
