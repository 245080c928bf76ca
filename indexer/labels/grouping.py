"""Reads -> nodules -> LUNA16 annotations.

LIDC has no nodule identity across readers. Two nodule reads of one scan are taken to be the same
nodule when their centres lie within the larger of their radii; groups are merged closest pair
first (single linkage, as pylidc's clustering), never letting one reader appear twice in a group.
A group matches a LUNA16 annotation when its centre lies within the annotation's diameter / 2
(the LUNA16 hit rule); each annotation and each group is matched at most once, groups of >= 3
reads (LUNA16's own criterion) first, then nearest first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.cluster.hierarchy import DisjointSet
from scipy.spatial import cKDTree

from indexer.data.luna import LunaPoint
from model.clinical.labels import Read, ReadKind

#: Radius given to reads without an outline size, so that coincident marks still group.
_MIN_RADIUS_MM = 1.5
#: LIDC scans were read by at most 4 radiologists; LUNA16 kept nodules marked by >= 3.
MAX_READERS = 4
LUNA16_MIN_READERS = 3

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ReadGroup:
    """The reads of one nodule in one scan."""

    series_uid: str
    reads: tuple[Read, ...]

    @property
    def center_xyz(self) -> npt.NDArray[np.float64]:
        """Mean of the reads' centres (world mm)."""
        return np.asarray(np.mean([r.center_xyz for r in self.reads], axis=0), dtype=np.float64)

    @property
    def malignancy_ratings(self) -> list[int]:
        """The individual malignancy ratings of the reads that have characteristics."""
        return [r.characteristics.malignancy for r in self.reads if r.characteristics]


@dataclass(frozen=True)
class Mark:
    """A read with, where the source has one, its outline (for grouping only).

    Attributes:
        read: the read.
        outline_xyz: boundary points of all its slices, world mm, shape (N, 3); None for reads
            known only by centre and diameter (synthetic reads).
        touch_mm: outlines closer than this touch (the scan's slice spacing).
    """

    read: Read
    outline_xyz: F64 | None = None
    touch_mm: float = 0.0


def _radius(read: Read) -> float:
    return max((read.diameter_mm or 0.0) / 2.0, _MIN_RADIUS_MM)


def _pair_distances(marks: Sequence[Mark]) -> tuple[F64, F64]:
    """Distance between every two marks and the distance within which they are one nodule.

    Two outlined reads: the closest distance between their outlines, within the slice spacing
    (pylidc's rule: outlines that touch). Otherwise: centre distance, within the larger radius.
    """
    n = len(marks)
    centers = np.array([m.read.center_xyz for m in marks])
    radii = np.array([_radius(m.read) for m in marks])
    distance = np.linalg.norm(centers[:, None, :] - centers[None, :, :], axis=-1)
    reach = np.maximum(radii[:, None], radii[None, :])
    for i in range(n):
        for j in range(i + 1, n):
            a, b = marks[i].outline_xyz, marks[j].outline_xyz
            # Outlines far apart cannot touch; skip the point-to-point distances then.
            if a is None or b is None or distance[i, j] > reach[i, j] + 60.0:
                continue
            # Nearest neighbours through a k-d tree: the same minimum as all point pairs, without
            # the full distance matrix (the hot spot when grouping all of LIDC).
            nearest, _ = cKDTree(b).query(a, k=1)
            d = float(np.min(nearest))
            distance[i, j] = distance[j, i] = d
            reach[i, j] = reach[j, i] = max(marks[i].touch_mm, marks[j].touch_mm)
    return distance, reach


def _link(series_reads: Sequence[Read], distance: F64, reach: F64) -> list[list[int]]:
    """Single linkage of the read pairs within reach, closest first, one read per reader."""
    n = len(series_reads)
    i_idx, j_idx = np.nonzero(np.triu(distance <= reach, k=1))
    order = np.argsort(distance[i_idx, j_idx], kind="stable")
    sets = DisjointSet(range(n))
    for i, j in zip(i_idx[order].tolist(), j_idx[order].tolist(), strict=True):
        if sets.connected(i, j):
            continue
        readers_i = {series_reads[k].reader_id for k in sets.subset(i)} - {None}
        readers_j = {series_reads[k].reader_id for k in sets.subset(j)} - {None}
        if readers_i & readers_j:
            continue  # one reader marked two findings here: two nodules
        sets.merge(i, j)
    return sorted(sorted(subset) for subset in sets.subsets())


def _group_one_scan(marks: Sequence[Mark]) -> list[list[int]]:
    """Indices of the reads of each nodule of one scan.

    LIDC had at most 4 readers per scan. Where reader identities are unknown (pylidc), a group of
    more than 4 reads means neighbouring nodules were chained together; as pylidc does, the reach
    is then shrunk step by step until no group holds more than 4 reads.
    """
    series_reads = [m.read for m in marks]
    distance, reach = _pair_distances(marks)
    factor = 1.0
    groups = _link(series_reads, distance, reach)
    while max(len(g) for g in groups) > MAX_READERS and factor > 0.1:
        factor *= 0.9
        groups = _link(series_reads, distance, reach * factor)
    # Overlapping outlines of neighbouring nodules (distance 0) cannot be split by shrinking;
    # fall back to centres and radii within such a group.
    out = []
    for group in groups:
        if len(group) <= MAX_READERS or all(marks[k].outline_xyz is None for k in group):
            out.append(group)
            continue
        centered = [Mark(marks[k].read) for k in group]
        out.extend([group[k] for k in sub] for sub in _group_one_scan(centered))
    return sorted(out)


def group_reads(marks: Sequence[Mark | Read]) -> list[ReadGroup]:
    """Group the nodule reads (>= 3 mm) of every scan; small nodules and non-nodules stay out."""
    by_series: dict[str, list[Mark]] = defaultdict(list)
    for mark in marks:
        m = mark if isinstance(mark, Mark) else Mark(mark)
        if m.read.kind is ReadKind.NODULE:
            by_series[m.read.series_uid].append(m)
    groups = []
    for uid in sorted(by_series):
        series_marks = by_series[uid]
        for members in _group_one_scan(series_marks):
            groups.append(ReadGroup(uid, tuple(series_marks[k].read for k in members)))
    return groups


def match_annotations(
    annotations: Sequence[LunaPoint], groups: Sequence[ReadGroup]
) -> list[ReadGroup | None]:
    """For each annotation, the read group it matches (or None), nearest pairs first."""
    by_series: dict[str, list[int]] = defaultdict(list)
    for g, group in enumerate(groups):
        by_series[group.series_uid].append(g)
    candidates = []
    for a, annotation in enumerate(annotations):
        radius = (annotation.diameter_mm or 0.0) / 2.0
        for g in by_series.get(annotation.series_uid, []):
            d = float(np.linalg.norm(groups[g].center_xyz - np.asarray(annotation.center_xyz)))
            if d <= radius:
                # LUNA16 nodules were read by >= 3 radiologists: such groups go first.
                candidates.append((len(groups[g].reads) < LUNA16_MIN_READERS, d, a, g))
    matched: list[ReadGroup | None] = [None] * len(annotations)
    used: set[int] = set()
    for _, _, a, g in sorted(candidates):
        if matched[a] is None and g not in used:
            matched[a] = groups[g]
            used.add(g)
    return matched
