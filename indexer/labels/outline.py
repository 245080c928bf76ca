"""LIDC outlines (pixel polygons on slices) to a world centre and an approximate diameter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from model.ct.geometry import Geometry

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Outline:
    """One ``roi`` of a read: boundary pixels on the slice at world ``z_mm``.

    Attributes:
        z_mm: world z of the slice (LIDC ``imageZposition``).
        points_col_row: boundary pixel positions, shape (N, 2), as (column, row) = (x, y) index.
        inclusion: False for an exclusion (a hole cut out of the nodule).
    """

    z_mm: float
    points_col_row: F64
    inclusion: bool = True


def _polygon(points: F64) -> tuple[float, F64]:
    """Pixel area and centroid (col, row) of the region a boundary-pixel polygon encloses.

    The boundary pixels belong to the region, so by Pick's theorem the pixel count is the
    polygon's area plus half its boundary points plus one.
    """
    x, y = points[:, 0], points[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    area = 0.5 * float(cross.sum())
    pixels = abs(area) + len(points) / 2.0 + 1.0
    if abs(area) < 1.0:
        return pixels, points.mean(axis=0)
    cx = float(((x + x1) * cross).sum()) / (6.0 * area)
    cy = float(((y + y1) * cross).sum()) / (6.0 * area)
    return pixels, np.array([cx, cy])


def slice_index(geometry: Geometry, z_mm: float) -> float:
    """Continuous slice index of the axial slice at world z (axial scans)."""
    ox, oy, _ = geometry.origin_xyz
    return float(geometry.world_to_index_zyx([ox, oy, z_mm])[0])


def to_world(geometry: Geometry, z_mm: float, col_row: F64) -> F64:
    """World mm (N, 3) of pixel positions (N, 2) as (column, row) on the slice at world z."""
    k = slice_index(geometry, z_mm)
    index_zyx = np.column_stack([np.full(len(col_row), k), col_row[:, 1], col_row[:, 0]])
    return geometry.index_zyx_to_world(index_zyx)


def _slice_indices(geometry: Geometry, z_mm: Sequence[float]) -> F64:
    """Continuous slice index of each axial slice at world z (one conversion for all)."""
    ox, oy, _ = geometry.origin_xyz
    z = np.asarray(z_mm, dtype=np.float64)
    points = np.column_stack([np.full(len(z), ox), np.full(len(z), oy), z])
    return np.asarray(geometry.world_to_index_zyx(points)[:, 0])


def summarise(outlines: Sequence[Outline], geometry: Geometry) -> tuple[F64, float, F64]:
    """Centre (world mm), approximate diameter (mm) and boundary points (world mm) of a read.

    The centre is the area-weighted centroid of the enclosed regions over all slices (exclusions
    subtract); the diameter is the equivalent diameter of the largest slice's region.
    """
    sx, sy, _ = geometry.spacing_xyz
    slices = _slice_indices(geometry, [o.z_mm for o in outlines])
    weights, centroids, areas_mm2, index_rows = [], [], [], []
    for outline, k in zip(outlines, slices, strict=True):
        points = np.asarray(outline.points_col_row, dtype=np.float64)
        pixels, centroid = _polygon(points)
        sign = 1.0 if outline.inclusion else -1.0
        weights.append(sign * pixels)
        centroids.append((k, centroid[1], centroid[0]))
        if outline.inclusion:
            areas_mm2.append(pixels * sx * sy)
        index_rows.append(np.column_stack([np.full(len(points), k), points[:, 1], points[:, 0]]))
    # Centroids and boundary points go to world mm in one conversion each (hot on all of LIDC).
    centers = geometry.index_zyx_to_world(np.asarray(centroids, dtype=np.float64))
    w = np.asarray(weights)
    if w.sum() <= 0:
        w = np.abs(w)
    center = (centers * w[:, None]).sum(axis=0) / w.sum()
    diameter = 2.0 * float(np.sqrt(max(areas_mm2, default=0.0) / np.pi))
    return center, diameter, geometry.index_zyx_to_world(np.concatenate(index_rows))
