"""A chest phantom rendered in world millimetres: body, lungs, spine, vessel trees, noise.

Everything is defined in the world (LPS) frame and sampled at the voxel centres of the scan's
geometry, so anisotropic spacing and flipped axes change the voxels but never the anatomy. The
phantom keeps a reduced field of view (the body fills the in-plane matrix) so that a demo set of
tens of scans is generated in seconds; ``matrix`` 512 gives full-size volumes.

Synthetic scans use diagonal direction matrices (identity or flipped axes), which keeps world
coordinates separable per axis; the readers and the patch function handle any direction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from model.ct.geometry import Geometry, spacing_zyx

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

AIR_HU = -1000.0
LUNG_HU = -860.0
SOFT_TISSUE_HU = 40.0
FAT_HU = -100.0
BONE_HU = 450.0
VESSEL_HU = 40.0


def axes_world(geometry: Geometry) -> tuple[F64, F64, F64]:
    """World coordinate of every index along z, y and x (diagonal direction matrices only)."""
    d = geometry.direction_matrix
    if not np.allclose(d, np.diag(np.diag(d))):
        raise ValueError("the phantom renders only diagonal (identity or flipped) directions")
    nz, ny, nx = geometry.shape_zyx
    zeros = np.zeros
    xw = geometry.index_zyx_to_world(np.stack([zeros(nx), zeros(nx), np.arange(nx)], 1))[:, 0]
    yw = geometry.index_zyx_to_world(np.stack([zeros(ny), np.arange(ny), zeros(ny)], 1))[:, 1]
    zw = geometry.index_zyx_to_world(np.stack([np.arange(nz), zeros(nz), zeros(nz)], 1))[:, 2]
    return zw, yw, xw


def box_slices(axis_world: F64, low: float, high: float) -> slice:
    """Index range whose world coordinates along one axis lie in [low, high]."""
    inside = np.flatnonzero((axis_world >= low) & (axis_world <= high))
    if inside.size == 0:
        return slice(0, 0)
    return slice(int(inside.min()), int(inside.max()) + 1)


@dataclass
class Canvas:
    """An HU volume being painted, with the world coordinates of its voxel axes."""

    geometry: Geometry
    hu: F32
    zw: F64
    yw: F64
    xw: F64
    nodules: npt.NDArray[np.bool_]
    """The voxels painted as nodule with membership >= 0.5: the nodules' masks."""

    @classmethod
    def blank(cls, geometry: Geometry) -> Canvas:
        """An all-air canvas over the scan's grid."""
        zw, yw, xw = axes_world(geometry)
        hu = np.full(geometry.shape_zyx, AIR_HU, np.float32)
        return cls(geometry, hu, zw, yw, xw, np.zeros(geometry.shape_zyx, dtype=bool))

    def paint(
        self,
        center_xyz: F64,
        half_extent_mm: float,
        membership: Callable[[F64, F64, F64], F64],
        value: Callable[[F64, F64, F64], F64] | float,
        where: Callable[[F64, F64, F64], F64] | None = None,
        nodule: bool = False,
    ) -> None:
        """Blend ``value`` in with weight ``membership`` over a cube around a world point.

        ``membership``, ``value`` and ``where`` receive world offsets (dz, dy, dx) from the centre
        in mm, broadcastable to the local box, and return weights in [0, 1] (or HU for value).
        ``nodule``: the painted body is a nodule; its voxels of membership >= 0.5 join
        ``nodules``.
        """
        cx, cy, cz = (float(v) for v in center_xyz)
        h = half_extent_mm
        sz = box_slices(self.zw, cz - h, cz + h)
        sy = box_slices(self.yw, cy - h, cy + h)
        sx = box_slices(self.xw, cx - h, cx + h)
        if sz.stop == sz.start or sy.stop == sy.start or sx.stop == sx.start:
            return
        dz = (self.zw[sz] - cz)[:, None, None]
        dy = (self.yw[sy] - cy)[None, :, None]
        dx = (self.xw[sx] - cx)[None, None, :]
        m = membership(dz, dy, dx)
        if where is not None:
            m = m * where(dz, dy, dx)
        v = value(dz, dy, dx) if callable(value) else value
        local = self.hu[sz, sy, sx]
        self.hu[sz, sy, sx] = (local * (1.0 - m) + v * m).astype(np.float32)
        if nodule:
            self.nodules[sz, sy, sx] |= np.broadcast_to(m, local.shape) >= 0.5


def soft_step(signed_distance_mm: F64, width_mm: float) -> F64:
    """1 inside, 0 outside, a logistic edge of about ``width_mm`` (partial volume / margin)."""
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(signed_distance_mm / width_mm, -30, 30))))


def segment_distance(dz: F64, dy: F64, dx: F64, vector_xyz: F64) -> tuple[F64, F64]:
    """Distance from points (offsets from the segment start) to a segment, and the position t."""
    vx, vy, vz = (float(v) for v in vector_xyz)
    length2 = max(vx * vx + vy * vy + vz * vz, 1e-9)
    t = np.clip((dx * vx + dy * vy + dz * vz) / length2, 0.0, 1.0)
    dist = np.sqrt((dx - t * vx) ** 2 + (dy - t * vy) ** 2 + (dz - t * vz) ** 2)
    return dist, t


@dataclass(frozen=True)
class Lung:
    """An ellipsoidal lung in world mm."""

    center_xyz: F64
    semi_axes_xyz: F64

    def level(self, dz: F64, dy: F64, dx: F64) -> F64:
        """Normalised radius (< 1 inside) at offsets from the lung centre."""
        a, b, c = self.semi_axes_xyz
        return np.asarray(np.sqrt((dx / a) ** 2 + (dy / b) ** 2 + (dz / c) ** 2))

    def contains(self, point_xyz: F64, margin_mm: float = 0.0) -> bool:
        """True when a point is inside the lung, at least ``margin_mm`` from its wall."""
        d = np.asarray(point_xyz) - self.center_xyz
        shrunk = np.maximum(self.semi_axes_xyz - margin_mm, 1e-3)
        return bool(np.sum((d / shrunk) ** 2) < 1.0)

    def wall_point(self, direction_xyz: F64) -> F64:
        """The point of the lung wall in a given direction from the lung centre."""
        u = np.asarray(direction_xyz, dtype=np.float64)
        u = u / np.linalg.norm(u)
        scale = 1.0 / np.sqrt(np.sum((u / self.semi_axes_xyz) ** 2))
        return np.asarray(self.center_xyz + scale * u)


@dataclass
class Vessel:
    """One straight vessel segment (world mm)."""

    start_xyz: F64
    end_xyz: F64
    radius_mm: float


@dataclass
class Anatomy:
    """The world-frame layout of one synthetic chest."""

    body_center_xyz: F64
    body_semi_axes_xy: tuple[float, float]
    lungs: tuple[Lung, Lung]
    spine_center_xy: tuple[float, float]
    spine_radius_mm: float
    vessels: list[Vessel] = field(default_factory=list)
    branch_points_xyz: list[F64] = field(default_factory=list)


def design_anatomy(geometry: Geometry, rng: np.random.Generator) -> Anatomy:
    """Place body, lungs, spine and vessel trees to fill the scan's field of view."""
    low, high = geometry.extent_world_xyz()
    center = (low + high) / 2.0
    width_x, width_y, height_z = high - low
    body = (0.47 * width_x, 0.40 * width_y)
    lung_axes = np.array([0.19 * width_x, 0.29 * width_y, 0.62 * height_z])
    lungs = []
    for side in (-1.0, 1.0):
        c = center + np.array(
            [side * 0.225 * width_x * rng.uniform(0.95, 1.05), 0.02 * width_y, 0.15 * height_z]
        )
        lungs.append(Lung(c, lung_axes * rng.uniform(0.92, 1.05, size=3)))
    anatomy = Anatomy(
        body_center_xyz=center,
        body_semi_axes_xy=body,
        lungs=(lungs[0], lungs[1]),
        spine_center_xy=(float(center[0]), float(center[1] + 0.31 * width_y)),
        spine_radius_mm=0.07 * width_x,
    )
    for lung in anatomy.lungs:
        hilum = lung.center_xyz + np.array(
            [-np.sign(lung.center_xyz[0] - center[0]) * 0.55 * lung.semi_axes_xyz[0], 0.0, 0.0]
        )
        _grow_tree(anatomy, lung, hilum, rng)
    return anatomy


def _grow_tree(anatomy: Anatomy, lung: Lung, hilum: F64, rng: np.random.Generator) -> None:
    """A binary vessel tree from the hilum outwards: radii shrink, branches spread."""
    scale = float(np.mean(lung.semi_axes_xyz[:2]))
    stack: list[tuple[F64, F64, float, int]] = []
    for _ in range(6):
        direction = rng.normal(size=3)
        direction[2] *= 1.5
        stack.append((hilum, direction / np.linalg.norm(direction), 0.06 * scale, 0))
    while stack:
        start, direction, radius, depth = stack.pop()
        length = scale * rng.uniform(0.25, 0.4) * (0.8**depth)
        # Bend a branch that would leave the lung back inwards a few times before dropping it.
        for _ in range(4):
            end = start + direction * length
            if lung.contains(end, margin_mm=2.0):
                break
            inwards = lung.center_xyz - start
            direction = direction + 0.7 * inwards / np.linalg.norm(inwards)
            direction = direction / np.linalg.norm(direction)
        else:
            continue
        anatomy.vessels.append(Vessel(start, end, max(radius, 0.5)))
        if depth >= 5 or radius < 0.6:
            continue
        anatomy.branch_points_xyz.append(end)
        for _ in range(2):
            turn = direction + rng.normal(scale=0.6, size=3)
            stack.append((end, turn / np.linalg.norm(turn), radius * 0.75, depth + 1))


def render_anatomy(canvas: Canvas, anatomy: Anatomy, rng: np.random.Generator) -> None:
    """Paint body, fat, spine, lungs with parenchymal texture, and the vessel trees."""
    zw, yw, xw = canvas.zw, canvas.yw, canvas.xw
    cx, cy, _ = anatomy.body_center_xyz
    a, b = anatomy.body_semi_axes_xy
    body_r = np.sqrt(((xw[None, :] - cx) / a) ** 2 + ((yw[:, None] - cy) / b) ** 2)  # (y, x)
    slice_hu = np.where(body_r < 1.0, np.where(body_r > 0.92, FAT_HU, SOFT_TISSUE_HU), AIR_HU)
    sx, sy = anatomy.spine_center_xy
    spine = np.hypot(xw[None, :] - sx, yw[:, None] - sy) < anatomy.spine_radius_mm
    slice_hu = np.where(spine, BONE_HU, slice_hu).astype(np.float32)
    canvas.hu[:] = slice_hu[None, :, :]
    # Parenchymal texture: smooth low-amplitude noise, so lung is not a flat plateau.
    coarse = rng.normal(0.0, 1.0, size=tuple(max(2, n // 8) for n in canvas.hu.shape))
    texture = ndimage.zoom(coarse, np.array(canvas.hu.shape) / np.array(coarse.shape), order=1)
    texture = texture[: canvas.hu.shape[0], : canvas.hu.shape[1], : canvas.hu.shape[2]]
    for lung in anatomy.lungs:
        lx, ly, lz = lung.center_xyz
        level = lung.level(
            (zw - lz)[:, None, None], (yw - ly)[None, :, None], (xw - lx)[None, None, :]
        )
        inside = level < 1.0
        canvas.hu[inside] = (LUNG_HU + 25.0 * texture[inside]).astype(np.float32)
    for vessel in anatomy.vessels:
        paint_vessel(canvas, anatomy, vessel)


def _inside_lungs(anatomy: Anatomy, origin_xyz: F64) -> Callable[[F64, F64, F64], F64]:
    """A ``where`` mask: 1 inside either lung, for offsets from ``origin_xyz``."""

    def where(dz: F64, dy: F64, dx: F64) -> F64:
        mask: F64 | float = 0.0
        for lung in anatomy.lungs:
            off = origin_xyz - lung.center_xyz
            level = lung.level(dz + off[2], dy + off[1], dx + off[0])
            mask = np.maximum(mask, soft_step(1.0 - level, 0.01))
        return np.asarray(mask)

    return where


def paint_vessel(canvas: Canvas, anatomy: Anatomy, vessel: Vessel) -> None:
    """A tube with a soft partial-volume edge, clipped to the lungs."""
    vector = vessel.end_xyz - vessel.start_xyz
    mid = (vessel.start_xyz + vessel.end_xyz) / 2.0
    half = float(np.linalg.norm(vector)) / 2.0 + vessel.radius_mm + 1.0
    offset = mid - vessel.start_xyz

    def membership(dz: F64, dy: F64, dx: F64) -> F64:
        dist, _ = segment_distance(dz + offset[2], dy + offset[1], dx + offset[0], vector)
        return soft_step(vessel.radius_mm - dist, 0.25)

    canvas.paint(mid, half, membership, VESSEL_HU, where=_inside_lungs(anatomy, mid))


def finish(canvas: Canvas, rng: np.random.Generator, noise_hu: float, psf_mm: float) -> F32:
    """Scanner blur (Gaussian PSF in mm) then correlated quantum noise; returns int-valued HU."""
    sz, sy, sx = spacing_zyx(canvas.geometry)
    sigma = [psf_mm / s for s in (sz, sy, sx)]
    blurred = ndimage.gaussian_filter(canvas.hu, sigma=sigma, mode="nearest")
    noise = rng.normal(0.0, 1.0, size=blurred.shape).astype(np.float32)
    noise = ndimage.gaussian_filter(noise, sigma=0.6)
    noise *= noise_hu / max(float(noise.std()), 1e-6)
    return np.asarray(np.rint(np.clip(blurred + noise, -1024, 3071)), dtype=np.float32)
