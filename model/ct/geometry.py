"""World (ITK/LPS millimetres, x,y,z) <-> voxel index (numpy z,y,x) conversion.

This is the only module in the project where axis order flips between the ITK/DICOM convention
(x, y, z: origin, spacing, size, index) and the numpy convention (z, y, x: array shape, index).
Everything else names its frame in the variable (``center_xyz``, ``index_zyx``) and calls here.

ITK maps a continuous index ``i_xyz`` to a physical point ``p_xyz`` by

    p_xyz = origin_xyz + D @ (spacing_xyz * i_xyz)

where ``D`` is the 3x3 direction matrix whose *columns* are the world directions of the x, y and z
array axes. The inverse uses the full matrix (not the ``|p - origin| / spacing`` shortcut, which is
wrong for flipped or oblique volumes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

#: Largest deviation from orthonormality accepted in a direction matrix.
_ORTHONORMAL_TOL = 1e-3


class GeometryError(ValueError):
    """A volume geometry (origin, spacing, direction, size) is not usable."""


#: Voxel sizes a CT can have, mm (thinnest micro-CT to the thickest slab): every CT read, from a
#: file, a DICOM series, the PACS or an upload's ``spacing_zyx``, is held to it.
CT_SPACING_RANGE_MM = (0.01, 50.0)


def _shown(values: Sequence[float]) -> str:
    """Numbers as a person reads them (numpy 2 writes ``np.float64(1.0)``)."""
    return ", ".join(f"{float(v):g}" for v in values)


def check_ct_spacing(spacing_xyz: Sequence[float]) -> None:
    """Refuse a voxel size no CT has (``CT_SPACING_RANGE_MM``).

    Raises:
        GeometryError: a spacing outside the range; the message gives it in mm.
    """
    low, high = CT_SPACING_RANGE_MM
    if not all(low <= float(s) <= high for s in spacing_xyz):
        raise GeometryError(
            f"voxel size ({_shown(spacing_xyz)}) mm (x, y, z) is outside the {low:g}-{high:g} mm "
            "a CT can have"
        )


@dataclass(frozen=True)
class Geometry:
    """Physical placement of a 3-D volume.

    Attributes:
        origin_xyz: world position (mm, LPS) of the centre of voxel index (0, 0, 0).
        spacing_xyz: voxel size in mm along the x, y and z array axes (all > 0).
        direction: 3x3 direction cosines, row-major as ITK stores them; column j is the world
            direction of array axis j (x, y, z).
        shape_zyx: array shape in numpy order (slices, rows, columns).
    """

    origin_xyz: tuple[float, float, float]
    spacing_xyz: tuple[float, float, float]
    direction: tuple[float, float, float, float, float, float, float, float, float]
    shape_zyx: tuple[int, int, int]

    def __post_init__(self) -> None:
        spacing = np.asarray(self.spacing_xyz, dtype=np.float64)
        if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
            raise GeometryError(
                f"spacing must be 3 positive finite numbers, got ({_shown(self.spacing_xyz)})"
            )
        origin = np.asarray(self.origin_xyz, dtype=np.float64)
        if origin.shape != (3,) or not np.all(np.isfinite(origin)):
            raise GeometryError(f"origin must be 3 finite numbers, got ({_shown(self.origin_xyz)})")
        d = self.direction_matrix
        if not np.allclose(d.T @ d, np.eye(3), atol=_ORTHONORMAL_TOL):
            raise GeometryError(f"direction matrix is not orthonormal: ({_shown(self.direction)})")
        if len(self.shape_zyx) != 3 or any(int(n) < 1 for n in self.shape_zyx):
            raise GeometryError(f"shape must be 3 positive sizes, got {self.shape_zyx}")

    @classmethod
    def from_itk(
        cls,
        origin_xyz: npt.ArrayLike,
        spacing_xyz: npt.ArrayLike,
        direction: npt.ArrayLike,
        size_xyz: npt.ArrayLike,
    ) -> Geometry:
        """Build from ITK-ordered values (``GetOrigin()``, ``GetSpacing()``, ``GetSize()``...)."""
        d = np.asarray(direction, dtype=np.float64).reshape(-1)
        if d.size != 9:
            raise GeometryError(f"direction must have 9 values, got {d.size}")
        o = tuple(float(v) for v in np.asarray(origin_xyz, dtype=np.float64).reshape(-1))
        s = tuple(float(v) for v in np.asarray(spacing_xyz, dtype=np.float64).reshape(-1))
        size = np.asarray(size_xyz).reshape(-1)
        if len(o) != 3 or len(s) != 3 or size.size != 3:
            raise GeometryError("origin, spacing and size must each have 3 values")
        nx, ny, nz = (int(v) for v in size)
        return cls(
            origin_xyz=(o[0], o[1], o[2]),
            spacing_xyz=(s[0], s[1], s[2]),
            direction=tuple(float(v) for v in d),  # type: ignore[arg-type]
            shape_zyx=(nz, ny, nx),
        )

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        """Volume size in ITK order (columns, rows, slices)."""
        nz, ny, nx = self.shape_zyx
        return (nx, ny, nz)

    @property
    def direction_matrix(self) -> FloatArray:
        """The 3x3 direction matrix; column j is the world direction of array axis x, y, z."""
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    def world_to_index_zyx(self, points_xyz: npt.ArrayLike) -> FloatArray:
        """Convert world points to continuous voxel indices.

        Args:
            points_xyz: world coordinates in mm (LPS), shape (..., 3) in x, y, z order.

        Returns:
            Continuous indices, shape (..., 3) in numpy z, y, x order; integer values are voxel
            centres.
        """
        p = np.asarray(points_xyz, dtype=np.float64)
        if p.shape[-1:] != (3,):
            raise GeometryError(f"points must have shape (..., 3), got {p.shape}")
        rel = p - np.asarray(self.origin_xyz)
        # D is orthonormal, so D^-1 = D^T; solve anyway for robustness to slightly skewed headers.
        index_xyz = np.linalg.solve(self.direction_matrix, rel.reshape(-1, 3).T).T
        index_xyz = index_xyz / np.asarray(self.spacing_xyz)
        return np.asarray(index_xyz[:, ::-1].reshape(p.shape), dtype=np.float64)

    def index_zyx_to_world(self, index_zyx: npt.ArrayLike) -> FloatArray:
        """Convert continuous indices (..., 3) in z, y, x order to world mm (..., 3) in x, y, z."""
        i = np.asarray(index_zyx, dtype=np.float64)
        if i.shape[-1:] != (3,):
            raise GeometryError(f"indices must have shape (..., 3), got {i.shape}")
        index_xyz = i.reshape(-1, 3)[:, ::-1] * np.asarray(self.spacing_xyz)
        world = (self.direction_matrix @ index_xyz.T).T + np.asarray(self.origin_xyz)
        return np.asarray(world.reshape(i.shape), dtype=np.float64)

    def world_to_index_affine(self) -> tuple[FloatArray, FloatArray]:
        """The linear map ``index_zyx = M @ point_xyz + b`` as (M of shape (3, 3), b of shape (3,)).

        Row r of M belongs to numpy axis r (z, y, x); column c to world axis c (x, y, z).
        """
        inverse = np.linalg.inv(self.direction_matrix) / np.asarray(self.spacing_xyz)[:, None]
        m_zyx = inverse[::-1].copy()
        return m_zyx, -(m_zyx @ np.asarray(self.origin_xyz))

    def contains_index_zyx(self, index_zyx: npt.ArrayLike) -> bool:
        """True when a continuous index lies inside the volume (voxel extents included)."""
        i = np.asarray(index_zyx, dtype=np.float64)
        upper = np.asarray(self.shape_zyx, dtype=np.float64) - 0.5
        return bool(np.all(i >= -0.5) and np.all(i <= upper))

    def contains_world(self, point_xyz: npt.ArrayLike) -> bool:
        """True when a world point (mm, LPS) lies inside the volume's voxel extents."""
        return self.contains_index_zyx(self.world_to_index_zyx(point_xyz))

    def extent_world_xyz(self) -> tuple[FloatArray, FloatArray]:
        """Axis-aligned world bounding box (min_xyz, max_xyz) of the voxel centres."""
        corners = np.array(
            [[z, y, x] for z in (0, 1) for y in (0, 1) for x in (0, 1)], dtype=np.float64
        ) * (np.asarray(self.shape_zyx, dtype=np.float64) - 1)
        world = self.index_zyx_to_world(corners)
        return world.min(axis=0), world.max(axis=0)

    def with_shape_zyx(self, shape_zyx: tuple[int, int, int], start_zyx: Sequence[int]) -> Geometry:
        """Geometry of the sub-box of ``shape_zyx`` voxels starting at integer ``start_zyx``."""
        origin = self.index_zyx_to_world(np.asarray(start_zyx, dtype=np.float64))
        return Geometry(
            origin_xyz=(float(origin[0]), float(origin[1]), float(origin[2])),
            spacing_xyz=self.spacing_xyz,
            direction=self.direction,
            shape_zyx=shape_zyx,
        )


def axis_aligned(
    shape_zyx: Sequence[int], spacing_zyx: Sequence[float], origin_xyz: Sequence[float] = (0, 0, 0)
) -> Geometry:
    """The geometry of a bare (z, y, x) array: identity direction, spacing in mm per axis."""
    nz, ny, nx = (int(n) for n in shape_zyx)
    sz, sy, sx = (float(s) for s in spacing_zyx)
    return Geometry.from_itk(tuple(origin_xyz), (sx, sy, sz), np.eye(3).reshape(-1), (nx, ny, nz))


def itk_index_xyz(index_zyx: Sequence[int]) -> list[int]:
    """Integer index in ITK (x, y, z) order, e.g. for ``ImageFileReader.SetExtractIndex``."""
    return [int(v) for v in reversed(tuple(index_zyx))]


def spacing_zyx(geometry: Geometry) -> tuple[float, float, float]:
    """Voxel spacing in numpy (z, y, x) order."""
    sx, sy, sz = geometry.spacing_xyz
    return (sz, sy, sx)
