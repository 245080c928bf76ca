"""Catalogue builds: embed every annotated nodule once, write a new version, verify, publish.

Builds and adds share one path: the nodules to index (with their scans, labels and reads) are
collected, vectors of nodules the current version already holds under the same model are reused
(never re-embedded), the rest are cut (one region-read pass per scan, in a worker pool, a bounded
number of scans in flight) and embedded in batches. The new version is written in its own
folder, verified, and only then published by switching ``CURRENT``. A build killed at any moment
leaves the previous version serving; its unfinished folder is removed by the next build.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session
from tqdm import tqdm

from indexer import failpoints
from indexer.maps import embedding_map
from indexer.patches import ScanJob, iter_scan_patches, open_scan
from indexer.version import code_version
from model.dicomweb import PacsConfig, parse_pacs_address

if TYPE_CHECKING:
    from indexer.build.ray_executor import RayOptions
from model.embedder import Embedder
from model.geometry import Geometry
from model.labels import CHARACTERISTICS, DerivedLabel, Read
from model.store.calibration import MANIFEST_KEY, calibrate_match_threshold, patient_group
from model.store.catalog import Catalog, sha256_file, sqlite_engine, verify_version
from model.store.layout import (
    CATALOG_FILE,
    EMBEDDINGS_FILE,
    INDEX_FILE,
    MANIFEST,
    IndexLayout,
    LayoutError,
    new_version_name,
    write_json_atomic,
)
from model.store.tables import Base, Build, Label, Nodule, NoduleRead, Scan
from model.store.vector_index import IndexType, build_index, default_params, save_index

logger = logging.getLogger(__name__)

OnError = Literal["fail", "skip"]
LOCK_FILE = ".lock"


class BuildError(RuntimeError):
    """A build cannot complete; nothing was published."""


class BuildLockedError(BuildError):
    """Another build holds the index folder's lock."""


@dataclass(frozen=True)
class ScanEntry:
    """A scan to index: where it is and whose it is."""

    series_uid: str
    path: Path
    patient_id: str | None
    geometry: Geometry | None = None
    """Known geometry (scans carried over from the parent version); read from the file if None."""


@dataclass
class NoduleEntry:
    """A nodule to index, with its labels and reads when known."""

    series_uid: str
    center_xyz: tuple[float, float, float]
    diameter_mm: float
    source: str
    label: DerivedLabel | None = None
    reads: list[Read] = field(default_factory=list)
    ratings_only: tuple[int, ...] = ()
    """Individual ratings when only those are known (``labels.csv``)."""
    nodule_id: int | None = None
    vector: npt.NDArray[np.float32] | None = None

    @property
    def key(self) -> tuple[str, tuple[float, float, float]]:
        """Identity across versions: scan and centre (to 1 µm)."""
        return (self.series_uid, tuple(round(float(v), 3) for v in self.center_xyz))  # type: ignore[return-value]


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


@contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    """One build at a time per index folder (an advisory lock the kernel drops if we die)."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with (index_dir / LOCK_FILE).open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildLockedError(f"{index_dir}: another build is running") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _reusable(
    layout: IndexLayout, parent: str | None, fingerprint: str
) -> tuple[dict[Any, tuple[int, np.ndarray]], int]:
    """Vectors and ids of the parent version, by nodule key, when it used the same model."""
    if parent is None:
        return {}, -1
    catalog = Catalog.open(layout.root, parent)
    try:
        with catalog.sessions() as session:
            rows = session.execute(select(Nodule)).scalars().all()
            max_id = max((r.id for r in rows), default=-1)
            if catalog.model_fingerprint != fingerprint:
                return {}, max_id
            out = {}
            for r in rows:
                key = (r.series_uid, tuple(round(float(v), 3) for v in r.center_xyz))
                out[key] = (r.id, np.asarray(catalog.embeddings[r.embedding_row], dtype=np.float32))
            return out, max_id
    finally:
        catalog.close()


def _embed_missing(
    embedder: Embedder,
    scans: dict[str, ScanEntry],
    todo: dict[str, list[NoduleEntry]],
    workers: int,
    on_error: OnError,
    progress: bool,
    pacs: PacsConfig | None = None,
) -> tuple[int, list[dict[str, str]]]:
    """Cut and embed the nodules without a vector; returns (count, failed scans)."""
    spec = embedder.card.preprocessing
    jobs = [
        ScanJob(uid, scans[uid].path, [n.center_xyz for n in nodes], spec, pacs)
        for uid, nodes in sorted(todo.items())
    ]
    failed: list[dict[str, str]] = []
    embedded = 0
    bar = tqdm(
        total=sum(len(v) for v in todo.values()),
        desc="embedding",
        unit="nodule",
        leave=False,
        disable=None if progress else True,
    )

    try:
        for result in iter_scan_patches(jobs, workers):
            uid = result.key
            if result.patches is None:
                if on_error == "fail":
                    raise BuildError(
                        f"scan {uid} cannot be read ({result.error}); nothing was published"
                    )
                failed.append({"series_uid": uid, "error": result.error or ""})
                # Neither the UID nor the reader's message (it names the file, i.e. the UID):
                # both go to the version's manifest, not the log.
                logger.warning(
                    "skipping a scan that cannot be read (%d so far; failed_scans in the manifest)",
                    len(failed),
                )
                continue
            vectors = embedder.embed_patches(result.patches)
            for node, vector in zip(todo[uid], vectors, strict=True):
                node.vector = vector
            embedded += len(vectors)
            bar.update(len(vectors))
            failpoints.reached("embedding")
    except BrokenProcessPool:
        # A reader that kills its process (segfault, OOM killer) breaks the pool: fail at once
        # and say so, rather than hang as multiprocessing.Pool would.
        raise BuildError(
            "a worker process died while reading a scan (crash or out of memory); nothing was "
            "published; --executor ray retries and skips such scans"
        ) from None
    bar.close()
    return embedded, failed


def _write_catalog(
    path: Path,
    version: str,
    parent: str | None,
    scans: dict[str, ScanEntry],
    nodes: Sequence[NoduleEntry],
    build_row: dict[str, Any],
    map_xy: npt.NDArray[np.float64] | None,
    pacs: PacsConfig | None = None,
) -> None:
    engine = sqlite_engine(path, readonly=False)
    try:
        Base.metadata.create_all(engine)
        with Session(engine) as session, session.begin():
            scan_ids: dict[str, int] = {}
            for i, uid in enumerate(sorted({n.series_uid for n in nodes})):
                entry = scans[uid]
                g = entry.geometry or open_scan(entry.path, pacs).geometry
                if parse_pacs_address(str(entry.path)) is not None:
                    kind = "dicomweb"
                elif entry.path.is_dir():
                    kind = "dicom"
                else:
                    kind = entry.path.suffix.lstrip(".").lower()
                session.add(
                    Scan(
                        id=i + 1,
                        series_uid=uid,
                        patient_id=entry.patient_id,
                        source_path=str(entry.path),
                        source_kind=kind,
                        origin_xyz=list(g.origin_xyz),
                        spacing_xyz=list(g.spacing_xyz),
                        direction=list(g.direction),
                        size_xyz=list(g.size_xyz),
                    )
                )
                scan_ids[uid] = i + 1
            for row, n in enumerate(nodes):
                assert n.nodule_id is not None
                session.add(
                    Nodule(
                        id=n.nodule_id,
                        scan_id=scan_ids[n.series_uid],
                        series_uid=n.series_uid,
                        center_x=n.center_xyz[0],
                        center_y=n.center_xyz[1],
                        center_z=n.center_xyz[2],
                        diameter_mm=n.diameter_mm,
                        source=n.source,
                        embedding_row=row,
                        map_x=float(map_xy[row, 0]) if map_xy is not None else None,
                        map_y=float(map_xy[row, 1]) if map_xy is not None else None,
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
                    session.add(
                        NoduleRead(
                            nodule_id=n.nodule_id,
                            reader_id=read.reader_id,
                            **{
                                (
                                    "internal_structure" if k == "internalStructure" else k
                                ): values.get(k)
                                for k in CHARACTERISTICS
                            },
                        )
                    )
                for rating in n.ratings_only:
                    session.add(
                        NoduleRead(nodule_id=n.nodule_id, reader_id=None, malignancy=rating)
                    )
            session.add(Build(version=version, parent_version=parent, **build_row))
    finally:
        engine.dispose()


def build_catalog(
    *,
    index_dir: Path,
    model_dir: Path,
    scans: dict[str, ScanEntry],
    nodes: list[NoduleEntry],
    data_fingerprint: str,
    index_type: IndexType = "exact",
    index_params: dict[str, Any] | None = None,
    keep: int = 5,
    workers: int = 1,
    on_error: OnError = "fail",
    device: str = "auto",
    progress: bool = True,
    pacs: PacsConfig | None = None,
    ray: RayOptions | None = None,
    max_failed_scans: int | None = None,
) -> BuildResult:
    """Write, verify and publish a new catalogue version of ``nodes``.

    Scans whose path is a ``dicomweb:`` address are read from ``pacs``. With ``ray`` the nodules
    are embedded on a Ray cluster (``indexer.build.ray_executor``), else by local processes.
    ``max_failed_scans``: with ``on_error="skip"``, more failures than this fail the build.

    Raises:
        BuildLockedError: another build runs on ``index_dir``.
        BuildError: a scan failed with ``on_error="fail"``, nothing to index, or the new version
            did not verify. Nothing is published then; the previous version stays current.
    """
    t0 = time.perf_counter()
    layout = IndexLayout(index_dir)
    with build_lock(index_dir):
        removed = layout.clean_unfinished()
        if removed:
            logger.info("removed unfinished versions %s", removed)
        embedder = Embedder.from_model_dir(model_dir, device)
        fingerprint = embedder.card.fingerprint
        parent = layout.current()
        reusable, max_id = _reusable(layout, parent, fingerprint)
        todo: dict[str, list[NoduleEntry]] = defaultdict(list)
        next_id = max_id + 1
        for n in nodes:
            if n.key in reusable:
                n.nodule_id, n.vector = reusable[n.key]
            else:
                n.nodule_id = next_id
                next_id += 1
                todo[n.series_uid].append(n)
        t_embed = time.perf_counter()
        work: Path | None = None
        if ray is not None:
            from indexer.build.ray_executor import embed_with_ray

            embedded, failed, work = embed_with_ray(
                index_dir=index_dir,
                model_dir=model_dir,
                embedder=embedder,
                scans=scans,
                todo=todo,
                device=device,
                options=ray,
                pacs=pacs,
                progress=progress,
            )
        else:
            embedded, failed = _embed_missing(
                embedder, scans, todo, workers, on_error, progress, pacs
            )
            if max_failed_scans is not None and len(failed) > max_failed_scans:
                raise BuildError(
                    f"{len(failed)} scans failed, more than --max-failed-scans "
                    f"{max_failed_scans}; nothing was published"
                )
        embed_s = time.perf_counter() - t_embed
        kept = [n for n in nodes if n.vector is not None]
        if not kept:
            raise BuildError("no nodule could be embedded; nothing was published")
        version = new_version_name(fingerprint)
        folder = layout.version_dir(version)
        folder.mkdir(parents=True)
        try:
            vectors = np.stack([n.vector for n in kept]).astype(np.float32)  # type: ignore[misc]
            ids = np.array([n.nodule_id for n in kept], dtype=np.int64)
            with (folder / EMBEDDINGS_FILE).open("wb") as f:
                np.save(f, vectors)
                f.flush()
                os.fsync(f.fileno())
            params = {**default_params(index_type, len(kept)), **(index_params or {})}
            index = build_index(vectors, ids, index_type, params)
            save_index(index, folder / INDEX_FILE)
            failpoints.reached("index-written")
            timings = {"embed_s": embed_s, "total_s": time.perf_counter() - t0}
            # The service's "no close match" threshold, from this version's own index and vectors
            # (model.store.calibration): written with the version, so it always fits them.
            t_threshold = time.perf_counter()
            groups = [patient_group(n.series_uid, scans[n.series_uid].patient_id) for n in kept]
            threshold = calibrate_match_threshold(index, vectors, ids, groups)
            timings["threshold_s"] = time.perf_counter() - t_threshold
            if threshold is not None:
                logger.info(
                    "match threshold %.4f: %gth percentile of %d nodules' nearest other-patient "
                    "similarity",
                    threshold.value,
                    threshold.percentile,
                    threshold.n_queries,
                )
            created_at = datetime.now(UTC)
            n_scans = len({n.series_uid for n in kept})
            build_row = {
                "model_fingerprint": fingerprint,
                "preprocessing": embedder.card.preprocessing.model_dump(mode="json"),
                "data_fingerprint": data_fingerprint,
                "index_type": index_type,
                "index_params": params,
                "n_scans": n_scans,
                "n_nodules": len(kept),
                "n_labelled": sum(
                    1 for n in kept if n.label is not None and n.label.label_binary is not None
                ),
                "n_embedded": embedded,
                "timings_s": timings,
                "created_at": created_at,
                "status": "published",
            }
            t_map = time.perf_counter()
            map_xy = embedding_map(vectors)
            timings["map_s"] = time.perf_counter() - t_map
            _write_catalog(
                folder / CATALOG_FILE, version, parent, scans, kept, build_row, map_xy, pacs
            )
            manifest = {
                "version": version,
                "parent_version": parent,
                "created_at": created_at.isoformat(),
                "model_fingerprint": fingerprint,
                "model_dir": str(model_dir.resolve()),
                "model": embedder.card.summary(),
                "preprocessing": build_row["preprocessing"],
                "data_fingerprint": data_fingerprint,
                "index_type": index_type,
                "index_params": params,
                "n_scans": n_scans,
                "n_nodules": len(kept),
                "n_labelled": build_row["n_labelled"],
                "n_embedded": embedded,
                "n_reused": len(kept) - embedded,
                "dim": int(vectors.shape[1]),
                "failed_scans": failed,
                MANIFEST_KEY: threshold.to_manifest() if threshold is not None else None,
                "timings_s": timings,
                "code_version": code_version(),
                "files": {
                    name: sha256_file(folder / name)
                    for name in (INDEX_FILE, CATALOG_FILE, EMBEDDINGS_FILE)
                },
            }
            write_json_atomic(folder / MANIFEST, manifest)
            problems = verify_version(index_dir, version, fingerprint)
            if problems:
                raise BuildError("the new version did not verify: " + "; ".join(problems))
            failpoints.reached("before-switch")
            layout.set_current(version)
        except BaseException:
            # Never leave a half version behind that could be mistaken for a complete one.
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)  # published: the shards are done with
        pruned = layout.prune(keep)
        timings["total_s"] = time.perf_counter() - t0
        return BuildResult(
            version=version,
            n_scans=n_scans,
            n_nodules=len(kept),
            n_embedded=embedded,
            n_reused=len(kept) - embedded,
            failed_scans=failed,
            timings_s=timings,
            removed_unfinished=removed,
            pruned=pruned,
        )


def rollback(index_dir: Path, version: str) -> None:
    """Point ``CURRENT`` back at an earlier complete version after verifying it."""
    layout = IndexLayout(index_dir)
    if version not in layout.versions():
        raise LayoutError(f"no complete version {version!r} in {index_dir}")
    problems = verify_version(index_dir, version)
    if problems:
        raise BuildError(f"version {version} does not verify: " + "; ".join(problems))
    with build_lock(index_dir):
        layout.set_current(version)
