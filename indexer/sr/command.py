"""``nodule-index report``: a similar-case search at a point of a DICOM series, as a DICOM SR.

With ``--seg-out`` the estimated nodule mask goes along as a DICOM SEG the SR references.

The same report as the service's ``POST /v1/reports/sr`` (``model.clinical.sr``), from the command
line: the catalogue's current version and its model, a DICOM folder, a world point (mm, LPS). As in
the service, a catalogue scan's nodule at the point and (unless ``--include-own-patient``) its
patient's nodules are left out, and a search with no close match codes no vote. Its arguments are
registered by ``indexer.sr.arguments.add_report``.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from model.clinical.measure import MeasureError
from model.clinical.nodule_mask import FoundNodule, find_nodule
from model.clinical.report import SearchOutcome, build_report
from model.clinical.sr import SimilarCase
from model.clinical.vote import majority, malignant_probability, match_state
from model.ct.dicom import DicomSeriesSource
from model.ct.volume import VolumeReadError
from model.nn.card import CardError
from model.nn.embedder import Embedder
from model.nn.query import QuerySize, query_vector
from model.preprocessing import CoordinateOutsideVolumeError, extract_patch
from model.store.catalog import Catalog
from model.store.layout import LayoutError
from model.store.tables import Nodule

logger = logging.getLogger(__name__)

XYZ = tuple[float, float, float]
#: Nodules a query leaves out (the one at the point) and the patient left out (None: nobody).
_LeftOut = tuple[frozenset[int], str | None]


@dataclass(frozen=True)
class _Found:
    """A catalogue neighbour as the report counts it."""

    nodule_id: int
    similarity: float
    mean_rating: float | None
    label_binary: int | None


def _left_out(catalog: Catalog, source: DicomSeriesSource, center: XYZ, own: bool) -> _LeftOut:
    """What the service's point query leaves out: the nodule at the point, its patient's."""
    scan = catalog.scan_nodules(source.series_uid)
    if scan is None:
        return frozenset(), None
    at_point = scan.nodule_at(center)
    patient = None if own else scan.patient_id
    return (frozenset() if at_point is None else frozenset({at_point})), patient


def _query_size(catalog: Catalog, left_out: _LeftOut, found: FoundNodule | None) -> QuerySize:
    """The size the vector is read at, as the service chooses it (``model.nn.query``).

    The recorded diameter of the catalogue nodule at the point, else the estimate.
    """
    recorded = None
    if left_out[0]:
        with catalog.sessions() as session:
            nodule = session.get(Nodule, next(iter(left_out[0])))
            recorded = nodule.diameter_mm if nodule is not None else None
    estimated = found.region.measurement.mean_diameter_mm if found is not None else None
    return QuerySize.choose(None, recorded, estimated)


def _nearest(catalog: Catalog, vector: np.ndarray, k: int, left_out: _LeftOut) -> list[_Found]:
    """The ``k`` nearest catalogue nodules, less the ones left out."""
    nodule_ids, patient = left_out
    total = int(catalog.index.ntotal)
    scores, ids = catalog.search(vector[None].astype(np.float32), min(total, max(1, 4 * k + 16)))
    pairs = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
    with catalog.sessions() as session:
        query = select(Nodule).where(Nodule.id.in_([i for i, _ in pairs]))
        options = (selectinload(Nodule.label), selectinload(Nodule.scan))
        rows = {n.id: n for n in session.execute(query.options(*options)).scalars()}
        kept = [
            (rows[i], s)
            for i, s in pairs
            if i in rows
            and i not in nodule_ids
            and (patient is None or rows[i].scan.patient_id != patient)
        ]
        return [_found(row, similarity) for row, similarity in kept[:k]]


def _found(row: Nodule, similarity: float) -> _Found:
    label = row.label
    if label is None:
        return _Found(row.id, similarity, None, None)
    return _Found(row.id, similarity, label.mean_malignancy, label.label_binary)


def _outcome(found: list[_Found], threshold: float | None) -> SearchOutcome:
    """The service's rule (``model.clinical.vote``): the match state, weak matches, the vote."""
    state = match_state(found[0].similarity if found else None, threshold)
    cases = [
        SimilarCase(f.nodule_id, f.similarity, f.mean_rating, state.weak(f.similarity))
        for f in found
    ]
    voters = [f for f in found if f.label_binary is not None]
    if not voters:
        return SearchOutcome(cases, None, None, state)
    binary = [float(f.label_binary or 0) for f in voters]
    share = float(malignant_probability([f.similarity for f in voters], binary))
    return SearchOutcome(cases, share, int(majority(binary, share)), state)


def run(args: argparse.Namespace) -> int:
    """Exit 0 with the SR written; 2 on bad input (the message says which)."""
    try:
        catalog = Catalog.open(args.index)
    except (LayoutError, OSError) as e:
        logger.error("%s", e)
        return 2
    try:
        embedder = Embedder.from_model_dir(catalog.manifest.model_dir_at(args.index), args.device)
        source = DicomSeriesSource(args.series, args.series_uid)
        center = tuple(args.center)
        patch = extract_patch(source, center, embedder.card.preprocessing)
        left_out = _left_out(catalog, source, center, args.include_own_patient)
        found_nodule = find_nodule(embedder, source, center, patch)
        vector = query_vector(
            embedder, source, center, patch, _query_size(catalog, left_out, found_nodule)
        )
        nearest = _nearest(catalog, vector, args.k, left_out)
        threshold = catalog.match_threshold
        found = _outcome(nearest, threshold.value if threshold is not None else None)
        files = build_report(
            source,
            center,
            found,
            embedder,
            catalog.version,
            with_seg=args.seg_out is not None,
            patch=patch,
            found=found_nodule,
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(files.sr)
        if args.seg_out is not None:
            if files.seg is None:
                logger.warning("no nodule mask was found at the point: no SEG written")
            else:
                args.seg_out.parent.mkdir(parents=True, exist_ok=True)
                args.seg_out.write_bytes(files.seg)
    except (
        CardError,
        VolumeReadError,
        CoordinateOutsideVolumeError,
        MeasureError,
        ValueError,
        OSError,
    ) as e:
        logger.error("%s", e)
        return 2
    finally:
        catalog.close()
    logger.info("SR of %d neighbours written to %s", len(found.neighbors), args.out)
    return 0
