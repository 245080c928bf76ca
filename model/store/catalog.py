"""Reading and verifying a catalogue version (what the service opens, what ``verify`` checks)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from model.store.calibration import (
    MatchThreshold,
    MatchThresholdError,
    calibrate_match_threshold,
    patient_group,
)
from model.store.layout import (
    CATALOG_FILE,
    EMBEDDINGS_FILE,
    INDEX_FILE,
    MANIFEST,
    IndexLayout,
    LayoutError,
)
from model.store.manifest import Manifest
from model.store.tables import Build, Nodule, Scan
from model.store.vector_index import index_ids, load_index, search, to_gpu_if_available

logger = logging.getLogger(__name__)

DATA_FILES = (INDEX_FILE, CATALOG_FILE, EMBEDDINGS_FILE)


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sqlite_engine(path: Path, *, readonly: bool) -> Engine:
    """An engine on a catalogue file; read-only opens never create or change it."""
    if readonly:
        return create_engine(
            f"sqlite:///file:{path}?mode=ro&uri=true", connect_args={"check_same_thread": False}
        )
    return create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False})


@dataclass
class Catalog:
    """One opened catalogue version: FAISS index, SQLite rows and the raw embeddings."""

    version: str
    folder: Path
    manifest: Manifest
    index: Any
    engine: Engine
    sessions: sessionmaker[Session]
    embeddings: npt.NDArray[np.float32]

    @classmethod
    def open(cls, index_dir: Path, version: str | None = None, *, gpu: bool = False) -> Catalog:
        """Open ``version`` (default: the one ``CURRENT`` names).

        With ``gpu``, searches run on a GPU copy of the index when faiss-gpu and a GPU are present.
        """
        layout = IndexLayout(index_dir)
        version = version or layout.current()
        if version is None:
            raise LayoutError(f"{index_dir}: no catalogue built yet (no CURRENT)")
        folder = layout.version_dir(version)
        manifest = layout.manifest(version)
        try:
            MatchThreshold.from_manifest(manifest)
        except MatchThresholdError as e:
            raise LayoutError(f"{folder / MANIFEST}: {e}") from None
        index = load_index(folder / INDEX_FILE, manifest.index_params)
        if gpu:
            index = to_gpu_if_available(index)
        engine = sqlite_engine(folder / CATALOG_FILE, readonly=True)
        embeddings = np.load(folder / EMBEDDINGS_FILE, mmap_mode="r")
        return cls(version, folder, manifest, index, engine, sessionmaker(engine), embeddings)

    @property
    def index_dir(self) -> Path:
        """The index folder this version lives in (``INDEX_DIR``)."""
        return self.folder.parent.parent

    def present(self) -> bool:
        """The version's folder is still on disk (its manifest exists)."""
        return (self.folder / MANIFEST).is_file()

    @property
    def model_fingerprint(self) -> str:
        """Fingerprint of the model the vectors were made with."""
        return self.manifest.model_fingerprint

    @property
    def match_threshold(self) -> MatchThreshold | None:
        """The calibrated close-match threshold; None for versions built before it existed."""
        return MatchThreshold.from_manifest(self.manifest)

    @property
    def dim(self) -> int:
        """Vector length."""
        return int(self.index.d)

    def search(
        self, queries: npt.ArrayLike, k: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Top-``k`` similarities and nodule ids for (n, d) float32 unit queries."""
        return search(self.index, queries, k)

    def vector_of(self, nodule_id: int) -> npt.NDArray[np.float32]:
        """The stored embedding of one nodule."""
        with self.sessions() as session:
            row = session.get(Nodule, nodule_id)
            if row is None:
                raise KeyError(nodule_id)
            return np.asarray(self.embeddings[row.embedding_row], dtype=np.float32)

    def scan_nodules(self, series_uid: str) -> ScanNodules | None:
        """A catalogue scan's patient and its nodules' spheres; None: not a catalogue scan."""
        with self.sessions() as session:
            scan = session.execute(
                select(Scan).where(Scan.series_uid == series_uid)
            ).scalar_one_or_none()
            if scan is None:
                return None
            rows = session.execute(
                select(
                    Nodule.id, Nodule.center_x, Nodule.center_y, Nodule.center_z, Nodule.diameter_mm
                ).where(Nodule.scan_id == scan.id)
            ).all()
            return ScanNodules(
                scan.patient_id,
                tuple((i, (float(x), float(y), float(z)), float(d)) for i, x, y, z, d in rows),
            )

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()


@dataclass(frozen=True)
class ScanNodules:
    """A catalogue scan's patient and its nodules, for what a query in that scan leaves out."""

    patient_id: str | None
    nodules: tuple[tuple[int, tuple[float, float, float], float], ...]
    """``(id, centre xyz in world mm (LPS), recorded diameter mm)`` of each nodule."""

    def nodule_at(self, center_xyz: tuple[float, float, float]) -> int | None:
        """The nodule whose recorded sphere holds the point (the nearest centre if several).

        LUNA16's hit rule: within diameter / 2 of the centre. None when the point is in none.
        """
        point = np.asarray(center_xyz, dtype=np.float64)
        best: tuple[float, int] | None = None
        for nodule_id, centre, diameter_mm in self.nodules:
            distance = float(np.linalg.norm(np.asarray(centre, dtype=np.float64) - point))
            if distance <= diameter_mm / 2.0 and (best is None or distance < best[0]):
                best = (distance, nodule_id)
        return None if best is None else best[1]


def _threshold_problems(
    version: str, manifest: Manifest, catalog: Catalog, owners: Sequence[Any]
) -> list[str]:
    """The recorded match threshold is well formed and is this version's own (recomputed)."""
    try:
        recorded = MatchThreshold.from_manifest(manifest)
    except MatchThresholdError as e:
        return [f"{version}: {e}"]
    if recorded is None:
        return []  # built before thresholds were recorded: nothing to check
    vectors = np.asarray(catalog.embeddings, dtype=np.float32)
    ids = np.full(len(vectors), -1, dtype=np.int64)
    groups = [""] * len(vectors)
    for row, nodule_id, series_uid, patient_id in owners:
        ids[row] = nodule_id
        groups[row] = patient_group(series_uid, patient_id)
    again = calibrate_match_threshold(
        catalog.index, vectors, ids, groups, percentile=recorded.percentile
    )
    if again is None or abs(again.value - recorded.value) > 1e-4:
        found = "none" if again is None else f"{again.value:.6f}"
        return [
            f"{version}: recorded match threshold {recorded.value:.6f} is not the version's own "
            f"(recomputed: {found})"
        ]
    return []


def _checksum_problems(folder: Path, version: str, manifest: Manifest) -> list[str]:
    """Data files that are missing or differ from the manifest's checksums."""
    problems = []
    for name in DATA_FILES:
        path = folder / name
        if not path.is_file():
            problems.append(f"{version}: {name} is missing")
        elif sha256_file(path) != manifest.files.get(name):
            problems.append(f"{version}: {name} does not match its manifest checksum")
    return problems


@dataclass(frozen=True)
class _Rows:
    """What verification reads from a version's database."""

    ids_rows: list[Any]  # (nodule id, embedding row), by id
    owners: list[Any]  # (embedding row, nodule id, series UID, patient id), by row
    builds: list[Build]
    n_rows: int


def _read_rows(catalog: Catalog) -> _Rows:
    with catalog.sessions() as session:
        ids_rows = session.execute(
            select(Nodule.id, Nodule.embedding_row).order_by(Nodule.id)
        ).all()
        owners = session.execute(
            select(Nodule.embedding_row, Nodule.id, Nodule.series_uid, Scan.patient_id)
            .join(Scan, Scan.id == Nodule.scan_id)
            .order_by(Nodule.embedding_row)
        ).all()
        builds = list(session.execute(select(Build)).scalars().all())
        n_rows = session.scalar(select(func.count()).select_from(Nodule)) or 0
    return _Rows(list(ids_rows), list(owners), builds, n_rows)


def _shape_problems(version: str, manifest: Manifest, catalog: Catalog, n_rows: int) -> list[str]:
    """Vector counts and dimension agree across index, embeddings, database and manifest."""
    index, embeddings = catalog.index, catalog.embeddings
    n, dim = manifest.n_nodules, manifest.dim
    problems = []
    if not (index.ntotal == n_rows == len(embeddings) == n):
        problems.append(
            f"{version}: counts disagree: index {index.ntotal}, catalogue {n_rows}, "
            f"embeddings {len(embeddings)}, manifest {n}"
        )
    if index.d != dim or (embeddings.ndim == 2 and embeddings.shape[1] != dim):
        problems.append(f"{version}: dimension disagrees (index {index.d}, manifest {dim})")
    return problems


def _vector_problems(
    version: str, manifest: Manifest, catalog: Catalog, ids_rows: list[Any]
) -> list[str]:
    """Every stored vector is unit length and found first under its own nodule's id.

    Only for a version whose ids, counts and dimension already agree.
    """
    ids = np.array([r[0] for r in ids_rows], dtype=np.int64)
    order = np.array([r[1] for r in ids_rows])
    stored = np.asarray(catalog.embeddings[order], dtype=np.float32)
    _, found = search(catalog.index, stored, 1)
    exact = manifest.index_type == "exact"
    hits = float(np.mean(found[:, 0] == ids))
    problems = []
    # Exact search must return every vector as its own nearest neighbour; approximate indexes
    # may miss a few (duplicates, graph/list misses).
    if (exact and hits < 1.0) or hits < 0.95:
        problems.append(f"{version}: only {hits:.1%} of stored vectors find themselves first")
    if not np.allclose(np.linalg.norm(stored, axis=1), 1.0, atol=1e-3):
        problems.append(f"{version}: stored vectors are not unit length")
    return problems


def _model_problems(
    version: str, manifest: Manifest, builds: list[Build], expected: str | None
) -> list[str]:
    problems = []
    if len(builds) != 1 or builds[0].model_fingerprint != manifest.model_fingerprint:
        problems.append(f"{version}: build record and manifest disagree on the model")
    if expected and manifest.model_fingerprint != expected:
        problems.append(f"{version}: built with another model than the one expected")
    return problems


def verify_version(
    index_dir: Path, version: str, expected_model_fingerprint: str | None = None
) -> list[str]:
    """Every problem of a catalogue version; an empty list means it is sound.

    Checks: the manifest's file checksums; FAISS ids == catalogue rows; vector count and
    dimension agree across index, embeddings, database and manifest; every stored vector is in
    the index under its nodule's id; the model fingerprint (and, when given, that it is the
    expected one); a recorded match threshold is the version's own (recomputed from its index,
    vectors and patients; the manifest holding it has no checksum of its own).
    """
    layout = IndexLayout(index_dir)
    try:
        folder = layout.version_dir(version)
        manifest = layout.manifest(version)
    except LayoutError as e:
        return [str(e)]
    problems = _checksum_problems(folder, version, manifest)
    if problems:
        return problems
    try:
        catalog = Catalog.open(index_dir, version)
    except (LayoutError, OSError, RuntimeError, ValueError) as e:
        return [f"{version}: cannot open ({e})"]
    try:
        try:
            rows = _read_rows(catalog)
        except SQLAlchemyError as e:
            return [f"{version}: catalogue database unreadable ({type(e).__name__})"]
        problems += _shape_problems(version, manifest, catalog, rows.n_rows)
        ids = np.array([r[0] for r in rows.ids_rows], dtype=np.int64)
        if not np.array_equal(ids, np.sort(index_ids(catalog.index))):
            problems.append(f"{version}: FAISS ids differ from the catalogue's nodule ids")
        elif rows.ids_rows and not problems:
            # Searching the vectors needs ids, counts and dimension that agree.
            problems += _vector_problems(version, manifest, catalog, rows.ids_rows)
            problems += _threshold_problems(version, manifest, catalog, rows.owners)
        problems += _model_problems(version, manifest, rows.builds, expected_model_fingerprint)
    finally:
        catalog.close()
    if not (folder / MANIFEST).is_file():
        problems.append(f"{version}: manifest vanished")
    return problems
