"""``nodule-index report``: a similar-case search at a point of a DICOM series, as a DICOM SR.

With ``--seg-out`` the estimated nodule mask goes along as a DICOM SEG the SR references.

The same report as the service's ``POST /v1/reports/sr`` (``model.sr``), from the command line:
the catalogue's current version and its model, a DICOM folder, a world point (mm, LPS). Its
arguments are registered by ``indexer.arguments.add_report``.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from model.card import CardError
from model.dicom_io import DicomSeriesSource
from model.embedder import Embedder
from model.measure import MeasureError
from model.preprocessing import CoordinateOutsideVolumeError, extract_patch
from model.report import SearchOutcome, build_report
from model.sources import model_dir_of
from model.sr import SimilarCase
from model.store.catalog import Catalog
from model.store.layout import LayoutError
from model.store.tables import Nodule
from model.volume import VolumeReadError
from model.vote import majority, malignant_probability

logger = logging.getLogger(__name__)


def _neighbors(catalog: Catalog, vector: np.ndarray, k: int) -> SearchOutcome:
    scores, ids = catalog.search(vector[None].astype(np.float32), k)
    pairs = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
    cases: list[SimilarCase] = []
    sims: list[float] = []
    binary: list[float] = []
    with catalog.sessions() as session:
        query = select(Nodule).where(Nodule.id.in_([i for i, _ in pairs]))
        found = session.execute(query.options(selectinload(Nodule.label))).scalars()
        rows = {n.id: n for n in found}
        for nodule_id, similarity in pairs:
            row = rows.get(nodule_id)
            if row is None:
                continue
            label = row.label
            cases.append(
                SimilarCase(nodule_id, similarity, label.mean_malignancy if label else None)
            )
            if label is not None and label.label_binary is not None:
                sims.append(similarity)
                binary.append(float(label.label_binary))
    if not binary:
        return SearchOutcome(cases, None, None)
    probability = float(malignant_probability(sims, binary))
    return SearchOutcome(cases, probability, int(majority(binary, probability)))


def run(args: argparse.Namespace) -> int:
    """Exit 0 with the SR written; 2 on bad input (the message says which)."""
    try:
        catalog = Catalog.open(args.index)
    except (LayoutError, OSError) as e:
        logger.error("%s", e)
        return 2
    try:
        embedder = Embedder.from_model_dir(model_dir_of(args.index, catalog.manifest), args.device)
        source = DicomSeriesSource(args.series, args.series_uid)
        center = tuple(args.center)
        patch = extract_patch(source, center, embedder.card.preprocessing)
        found = _neighbors(catalog, embedder.embed_patches(patch[None])[0], args.k)
        files = build_report(
            source, center, found, embedder.card, catalog.version, with_seg=args.seg_out is not None
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(files.sr)
        if args.seg_out is not None:
            if files.seg is None:
                logger.warning("no mask could be grown at the point: no SEG written")
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
