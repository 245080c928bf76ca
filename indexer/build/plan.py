"""The build's first stage: what to index, which vectors the parent version already has, ids.

``plan_build`` takes the scans and nodules a source collected (``indexer.build.sources``) and
the current version, and gives a ``BuildPlan``: every nodule with its catalogue id, the vectors
reused from the parent (same model, same nodule by ``nodule_key``) and, per scan, the nodules
left to embed. Nothing is written here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from sqlalchemy import select

from model.clinical.labels import DerivedLabel, Read
from model.ct.geometry import Geometry
from model.store.catalog import Catalog
from model.store.layout import IndexLayout
from model.store.tables import Nodule

OnError = Literal["fail", "skip"]
#: A nodule's identity across versions: its scan and its centre to 1 µm.
NoduleKey = tuple[str, tuple[float, float, float]]


class BuildError(RuntimeError):
    """A build cannot complete; nothing was published."""


class BuildLockedError(BuildError):
    """Another build holds the index folder's lock."""


def nodule_key(series_uid: str, center_xyz: tuple[float, ...] | list[float]) -> NoduleKey:
    """Scan and centre rounded to 1 µm: the same nodule in two versions has the same key."""
    x, y, z = (round(float(v), 3) for v in center_xyz)
    return (series_uid, (x, y, z))


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
    def key(self) -> NoduleKey:
        """Identity across versions (``nodule_key``)."""
        return nodule_key(self.series_uid, self.center_xyz)


@dataclass
class BuildPlan:
    """What a build will write: every nodule with its id, and what is left to embed.

    Attributes:
        parent: the version current when the build started (None for the first).
        scans: series UID -> scan.
        nodes: every nodule, ids assigned; reused ones carry their parent vector.
        todo: series UID -> the nodules of that scan still without a vector.
    """

    parent: str | None
    scans: dict[str, ScanEntry]
    nodes: list[NoduleEntry]
    todo: dict[str, list[NoduleEntry]]

    @property
    def n_to_embed(self) -> int:
        """Nodules the embed stage has to compute."""
        return sum(len(v) for v in self.todo.values())


def _reusable(
    layout: IndexLayout, parent: str | None, fingerprint: str
) -> tuple[dict[NoduleKey, tuple[int, npt.NDArray[np.float32]]], int]:
    """The parent's ids and vectors by nodule key, and its largest id.

    Vectors count only when the parent was built with the same model (``fingerprint``).
    """
    if parent is None:
        return {}, -1
    catalog = Catalog.open(layout.root, parent)
    try:
        with catalog.sessions() as session:
            rows = session.execute(select(Nodule)).scalars().all()
            max_id = max((r.id for r in rows), default=-1)
            if catalog.model_fingerprint != fingerprint:
                return {}, max_id
            return {
                nodule_key(r.series_uid, r.center_xyz): (
                    r.id,
                    np.asarray(catalog.embeddings[r.embedding_row], dtype=np.float32),
                )
                for r in rows
            }, max_id
    finally:
        catalog.close()


def plan_build(
    layout: IndexLayout,
    fingerprint: str,
    scans: dict[str, ScanEntry],
    nodes: list[NoduleEntry],
) -> BuildPlan:
    """Assign ids and reuse the parent's vectors.

    Nodules the parent holds keep its ids (and, under the same model ``fingerprint``, its
    vectors); new ones get ids above its largest.
    """
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
    return BuildPlan(parent=parent, scans=scans, nodes=nodes, todo=dict(todo))
