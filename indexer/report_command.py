"""``nodule-index report``: a similar-case search at a point of a DICOM series, as a DICOM SR.

The same report as the service's ``POST /v1/reports/sr`` (``model.sr``), from the command line:
the catalogue's current version and its model, a DICOM folder, a world point (mm, LPS).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from model.card import CardError
from model.dicom_io import DicomSeriesSource
from model.embedder import Embedder
from model.measure import MeasureError, estimate_at
from model.preprocessing import CoordinateOutsideVolumeError, extract_patch
from model.sources import model_dir_of
from model.sr import SearchFindings, SimilarCase, evidence_for, search_report
from model.store.catalog import Catalog
from model.store.layout import LayoutError
from model.store.tables import Nodule
from model.volume import VolumeReadError
from model.vote import majority, malignant_probability

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Found:
    """The neighbours of a query and the vote over the labelled ones."""

    cases: list[SimilarCase]
    malignant_probability: float | None
    vote_binary: int | None


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    parse_center: Callable[[str], tuple[float, float, float]],
) -> None:
    """Register ``report``; ``parse_center`` reads ``--center X,Y,Z``."""
    p = sub.add_parser("report", help="a search at a point of a DICOM series as a DICOM SR file")
    p.add_argument("--index", type=Path, required=True, help="INDEX_DIR (its current version)")
    p.add_argument("--series", type=Path, required=True, help="folder of the DICOM CT series")
    p.add_argument("--series-uid", default=None, help="which series, if the folder holds several")
    p.add_argument(
        "--center", type=parse_center, required=True, help="X,Y,Z world mm (LPS, as LUNA16)"
    )
    p.add_argument("--k", type=int, default=5, help="neighbours (default 5)")
    p.add_argument("--device", default=None, help="auto, cpu or cuda (default: $NODULE_DEVICE)")
    p.add_argument("--out", type=Path, required=True, help="the SR file to write (.dcm)")


def _neighbors(catalog: Catalog, vector: np.ndarray, k: int) -> Found:
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
        return Found(cases, None, None)
    probability = float(malignant_probability(sims, binary))
    return Found(cases, probability, int(majority(binary, probability)))


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
        evidence = evidence_for(source, center, embedder.card.preprocessing)
        findings = SearchFindings(
            center_xyz=center,
            frame_of_reference_uid=str(evidence[0].FrameOfReferenceUID),
            neighbors=found.cases,
            malignant_probability=found.malignant_probability,
            vote_binary=found.vote_binary,
            size=estimate_at(source, center),
            model_fingerprint=embedder.card.fingerprint,
            index_version=catalog.version,
        )
        search_report(evidence, findings).save_as(args.out, enforce_file_format=True)
    except (
        CardError,
        VolumeReadError,
        CoordinateOutsideVolumeError,
        MeasureError,
        ValueError,
    ) as e:
        logger.error("%s", e)
        return 2
    finally:
        catalog.close()
    logger.info("SR of %d neighbours written to %s", len(found.cases), args.out)
    return 0
