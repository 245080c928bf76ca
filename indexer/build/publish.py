"""The build's last stage: write a version folder, verify it, switch ``CURRENT``, prune.

A version is written in its own folder: the raw vectors (``embeddings.npy``), the FAISS index,
the match threshold calibrated on them, the 2-D map, the SQLite catalogue, and last the
manifest, which marks the version complete. One ``Manifest`` (``model.store.manifest``)
describes the build; it is stored both as the catalogue's ``builds`` row and (with the files'
checksums) as ``manifest.json``. The version is verified, made current, and older ones are
pruned (never a leased one). A failure at any point removes the folder, so the previous version
stays current.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from indexer import failpoints
from indexer.build.embed import EmbedOutcome
from indexer.build.maps import embedding_map
from indexer.build.plan import BuildError, BuildPlan, NoduleEntry, ScanEntry
from indexer.version import code_version
from model.clinical.labels import CHARACTERISTICS
from model.ct.dicomweb import Pacs
from model.ct.open import open_source
from model.ct.pacs import PacsConfig, parse_pacs_address
from model.nn.embedder import Embedder
from model.store.calibration import MatchThreshold, calibrate_match_threshold, patient_group
from model.store.catalog import sha256_file, sqlite_engine, verify_version
from model.store.layout import (
    CATALOG_FILE,
    EMBEDDINGS_FILE,
    INDEX_FILE,
    MANIFEST,
    IndexLayout,
    new_version_name,
    write_json_atomic,
)
from model.store.manifest import Manifest
from model.store.tables import Base, Build, Label, Nodule, NoduleRead, Scan
from model.store.vector_index import IndexType, build_index, default_params, save_index

logger = logging.getLogger(__name__)

#: The manifest's fields the ``builds`` table holds (the manifest holds them all).
_BUILD_COLUMNS = frozenset(c.name for c in Build.__table__.columns) - {"id", "status"}


def build_row(manifest: Manifest) -> Build:
    """The catalogue's ``builds`` row of a version (its manifest without the checksums)."""
    return Build(**{k: getattr(manifest, k) for k in _BUILD_COLUMNS}, status="published")


@dataclass(frozen=True)
class PublishOptions:
    """How the version is indexed and kept."""

    model_dir: Path
    data_fingerprint: str
    index_type: IndexType = "exact"
    index_params: dict[str, Any] | None = None
    keep: int = 5
    pacs: PacsConfig | None = None


@dataclass
class BuildResult:
    """What a build did."""

    version: str
    n_scans: int
    n_nodules: int
    n_embedded: int
    n_reused: int
    failed_scans: list[dict[str, str]]
    timings_s: dict[str, float]
    removed_unfinished: list[str]
    pruned: list[str]


def publish(
    layout: IndexLayout,
    plan: BuildPlan,
    embedder: Embedder,
    outcome: EmbedOutcome,
    options: PublishOptions,
    timings: dict[str, float],
    started: float,
) -> tuple[Manifest, list[str]]:
    """Write, verify and switch to a new version of the plan's embedded nodules.

    ``timings`` (seconds by stage) gets the publish stage's; ``started`` is the build's
    ``time.perf_counter()`` at its start.

    Returns:
        The record written and the versions pruned.

    Raises:
        BuildError: nothing could be embedded, or the new version did not verify; the folder
            is removed and the previous version stays current.
    """
    kept = [n for n in plan.nodes if n.vector is not None]
    if not kept:
        raise BuildError("no nodule could be embedded; nothing was published")
    fingerprint = embedder.card.fingerprint
    version = new_version_name(fingerprint)
    folder = layout.version_dir(version)
    folder.mkdir(parents=True)
    try:
        record = _write_version(
            layout, version, plan, kept, embedder, outcome, options, timings, started
        )
        problems = verify_version(layout.root, version, fingerprint)
        if problems:
            raise BuildError("the new version did not verify: " + "; ".join(problems))
        failpoints.reached("before-switch")
        layout.set_current(version)
    except BaseException:
        # Never leave a half version behind that could be mistaken for a complete one.
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if outcome.work is not None:
        shutil.rmtree(outcome.work, ignore_errors=True)  # published: the shards are done with
    return record, layout.prune(options.keep)


def _write_version(
    layout: IndexLayout,
    version: str,
    plan: BuildPlan,
    kept: list[NoduleEntry],
    embedder: Embedder,
    outcome: EmbedOutcome,
    options: PublishOptions,
    timings: dict[str, float],
    started: float,
) -> Manifest:
    """Every file of the version, the manifest last."""
    folder = layout.version_dir(version)
    vectors = np.stack([n.vector for n in kept]).astype(np.float32)  # type: ignore[misc]
    ids = np.array([n.nodule_id for n in kept], dtype=np.int64)
    _save_vectors(folder / EMBEDDINGS_FILE, vectors)
    params = {**default_params(options.index_type, len(kept)), **(options.index_params or {})}
    index = build_index(vectors, ids, options.index_type, params)
    save_index(index, folder / INDEX_FILE)
    failpoints.reached("index-written")
    timings["total_s"] = time.perf_counter() - started
    threshold = _calibrate(index, vectors, ids, kept, plan.scans, timings)
    t_map = time.perf_counter()
    map_xy = embedding_map(vectors)
    timings["map_s"] = time.perf_counter() - t_map
    record = Manifest(
        version=version,
        parent_version=plan.parent,
        created_at=datetime.now(UTC),
        model_fingerprint=embedder.card.fingerprint,
        model_dir=str(options.model_dir.resolve()),
        index_dir=str(layout.root.absolute()),
        model=embedder.card.summary(),
        preprocessing=embedder.card.preprocessing.model_dump(mode="json"),
        data_fingerprint=options.data_fingerprint,
        index_type=options.index_type,
        index_params=params,
        n_scans=len({n.series_uid for n in kept}),
        n_nodules=len(kept),
        n_labelled=sum(1 for n in kept if n.label is not None and n.label.label_binary is not None),
        n_embedded=outcome.embedded,
        n_reused=len(kept) - outcome.embedded,
        dim=int(vectors.shape[1]),
        failed_scans=outcome.failed,
        match_threshold=threshold.to_manifest() if threshold is not None else None,
        timings_s=timings,
        code_version=code_version(),
    )
    write_catalog(folder / CATALOG_FILE, record, plan.scans, kept, map_xy, options.pacs)
    files = {
        name: sha256_file(folder / name) for name in (INDEX_FILE, CATALOG_FILE, EMBEDDINGS_FILE)
    }
    record = record.model_copy(update={"files": files})
    write_json_atomic(folder / MANIFEST, record.to_json())
    return record


def _save_vectors(path: Path, vectors: npt.NDArray[np.float32]) -> None:
    with path.open("wb") as f:
        np.save(f, vectors)
        f.flush()
        os.fsync(f.fileno())


def _calibrate(
    index: Any,
    vectors: npt.NDArray[np.float32],
    ids: npt.NDArray[np.int64],
    kept: list[NoduleEntry],
    scans: dict[str, ScanEntry],
    timings: dict[str, float],
) -> MatchThreshold | None:
    """The service's "no close match" threshold, from this version's own index and vectors.

    Written with the version (``model.store.calibration``), so it always fits them.
    """
    started = time.perf_counter()
    groups = [patient_group(n.series_uid, scans[n.series_uid].patient_id) for n in kept]
    threshold = calibrate_match_threshold(index, vectors, ids, groups)
    timings["threshold_s"] = time.perf_counter() - started
    if threshold is not None:
        logger.info(
            "match threshold %.4f: %gth percentile of %d nodules' nearest other-patient similarity",
            threshold.value,
            threshold.percentile,
            threshold.n_queries,
        )
    return threshold


def write_catalog(
    path: Path,
    record: Manifest,
    scans: dict[str, ScanEntry],
    nodes: Sequence[NoduleEntry],
    map_xy: npt.NDArray[np.float64] | None,
    pacs: PacsConfig | None = None,
) -> None:
    """The version's SQLite catalogue.

    Scans, nodules (row = embedding row), labels, reads and the build's record.
    """
    engine = sqlite_engine(path, readonly=False)
    try:
        Base.metadata.create_all(engine)
        with Session(engine) as session, session.begin():
            scan_ids = _add_scans(session, scans, nodes, pacs)
            for row, n in enumerate(nodes):
                xy = (float(map_xy[row, 0]), float(map_xy[row, 1])) if map_xy is not None else None
                _add_nodule(session, n, scan_ids[n.series_uid], row, xy)
            session.add(build_row(record))
    finally:
        engine.dispose()


def _add_scans(
    session: Session,
    scans: dict[str, ScanEntry],
    nodes: Sequence[NoduleEntry],
    pacs: PacsConfig | None,
) -> dict[str, int]:
    """One row per scan that has an indexed nodule; series UID -> row id."""
    scan_ids: dict[str, int] = {}
    for i, uid in enumerate(sorted({n.series_uid for n in nodes})):
        entry = scans[uid]
        g = entry.geometry or open_source(entry.path, Pacs(pacs) if pacs else None).geometry
        session.add(
            Scan(
                id=i + 1,
                series_uid=uid,
                patient_id=entry.patient_id,
                source_path=str(entry.path),
                source_kind=_source_kind(entry.path),
                origin_xyz=list(g.origin_xyz),
                spacing_xyz=list(g.spacing_xyz),
                direction=list(g.direction),
                size_xyz=list(g.size_xyz),
            )
        )
        scan_ids[uid] = i + 1
    return scan_ids


def _source_kind(path: Path) -> str:
    if parse_pacs_address(str(path)) is not None:
        return "dicomweb"
    if path.is_dir():
        return "dicom"
    return path.suffix.lstrip(".").lower()


def _add_nodule(
    session: Session,
    n: NoduleEntry,
    scan_id: int,
    row: int,
    map_xy: tuple[float, float] | None,
) -> None:
    """A nodule's row, its label and every read (ratings alone when only those are known)."""
    assert n.nodule_id is not None
    session.add(
        Nodule(
            id=n.nodule_id,
            scan_id=scan_id,
            series_uid=n.series_uid,
            center_x=n.center_xyz[0],
            center_y=n.center_xyz[1],
            center_z=n.center_xyz[2],
            diameter_mm=n.diameter_mm,
            source=n.source,
            embedding_row=row,
            map_x=map_xy[0] if map_xy is not None else None,
            map_y=map_xy[1] if map_xy is not None else None,
        )
    )
    if n.label is not None:
        d = n.label
        session.add(
            Label(
                nodule_id=n.nodule_id,
                n_readers=d.n_readers,
                ratings=list(d.ratings),
                mean_malignancy=d.mean_malignancy,
                label_binary=d.label_binary,
                label_4class=d.label_4class,
            )
        )
    for read in n.reads:
        values = read.characteristics.as_dict() if read.characteristics else {}
        columns = {
            ("internal_structure" if k == "internalStructure" else k): values.get(k)
            for k in CHARACTERISTICS
        }
        session.add(NoduleRead(nodule_id=n.nodule_id, reader_id=read.reader_id, **columns))
    for rating in n.ratings_only:
        session.add(NoduleRead(nodule_id=n.nodule_id, reader_id=None, malignancy=rating))
