"""A nodule's profile: size, density and shape numbers read off the CT at a point, given a size.

The measured blocks of the search vector (``model.nn.search_space``). Everything is sampled in
units of the nodule's radius R (half the given mean diameter), so a 4 mm and a 20 mm nodule are
described on the same scale; the diameter itself is the size block.

The HU come from the one patch function (``model.preprocessing.patch_hu``) on a wider grid and
HU window than the network's (``profile_spec``): 48 mm at 1 mm, -1000..1000 HU, so calcium
(> 200 HU, clipped away by the network's -1000..400 window) and the lung around a 30 mm nodule
are both seen. Points are sampled by trilinear interpolation of that grid:

- **size**: the natural log of the mean diameter (mm): ratios, not differences, matter.
- **density**: over a fixed set of points filling the ball of radius R, the mean, 10th, 50th,
  90th and 98th percentile HU (/ 1000), the share of points >= 200 HU (calcium) and <= -600 HU
  (ground glass, air); the mean HU (/ 1000) on the spheres of radius R and 1.5 R (margin, halo).
- **shape**: along 64 rays from the centre (a Fibonacci sphere), where HU first falls below the
  midpoint of the core's HU and lung (-850 HU): the mean of that boundary radius (/ R), its
  coefficient of variation (lobulation, spiculation), its min / max (sphericity), the share of
  rays with no boundary within 1.75 R (attachments, spicules, vessels); and the spread over rays
  of the mean HU between R and 1.5 R (an irregular margin).

Frames: ``center_xyz`` world mm (LPS); the patch is (z, y, x) along world z, y, x
(``model.preprocessing.patch_grid_xyz``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from model.ct.volume import VolumeSource
from model.preprocessing import PatchSpec, patch_hu

SIZE_NAMES = ("log_diameter_mm",)
DENSITY_NAMES = (
    "mean_hu",
    "p10_hu",
    "p50_hu",
    "p90_hu",
    "p98_hu",
    "calcium_share",
    "low_share",
    "rim_hu",
    "halo_hu",
)
SHAPE_NAMES = (
    "boundary_radius",
    "boundary_cv",
    "boundary_min_max",
    "open_ray_share",
    "rim_spread_hu",
)
#: The profile's blocks and their values, in vector order.
PROFILE_BLOCKS: dict[str, tuple[str, ...]] = {
    "size": SIZE_NAMES,
    "density": DENSITY_NAMES,
    "shape": SHAPE_NAMES,
}
PROFILE_NAMES = SIZE_NAMES + DENSITY_NAMES + SHAPE_NAMES

#: The profile grid: 48 voxels of 1 mm (a 30 mm nodule's 1.5 R halo fits) and a window that
#: keeps calcium (the network's stops at 400 HU).
PROFILE_SHAPE_ZYX = (48, 48, 48)
PROFILE_SPACING_MM = 1.0
PROFILE_WINDOW_HU = (-1000.0, 1000.0)
#: Radii are clamped to what LIDC calls a nodule (3..30 mm) and the grid can hold.
MIN_DIAMETER_MM = 3.0
MAX_DIAMETER_MM = 30.0
CALCIUM_HU = 200.0
LOW_HU = -600.0
LUNG_HU = -850.0
N_RAYS = 64
RAY_STEP = 0.05
RAY_REACH = 2.0
OPEN_RAY = 1.75


class ProfileError(ValueError):
    """A profile cannot be taken (no usable diameter)."""


def profile_spec(spec: PatchSpec) -> PatchSpec:
    """The grid the profile samples: wider than the network's, its outside policy kept."""
    return PatchSpec(
        patch_shape_zyx=PROFILE_SHAPE_ZYX,
        spacing_mm=PROFILE_SPACING_MM,
        hu_window=PROFILE_WINDOW_HU,
        outside=spec.outside,
    )


@cache
def _directions() -> npt.NDArray[np.float64]:
    """``N_RAYS`` unit vectors (z, y, x) spread evenly over the sphere (Fibonacci lattice)."""
    i = np.arange(N_RAYS, dtype=np.float64) + 0.5
    z = 1.0 - 2.0 * i / N_RAYS
    r = np.sqrt(1.0 - z**2)
    phi = np.pi * (1.0 + 5.0**0.5) * i
    return np.stack([z, r * np.sin(phi), r * np.cos(phi)], axis=1)


@cache
def _ball_points() -> npt.NDArray[np.float64]:
    """Points (z, y, x) of a regular 0.125 grid inside the unit ball (uniform in volume)."""
    axis = np.arange(-1.0, 1.0 + 1e-9, 0.125)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    return np.asarray(grid[np.linalg.norm(grid, axis=1) <= 1.0])


@cache
def _ray_radii() -> npt.NDArray[np.float64]:
    return np.arange(0.0, RAY_REACH + 1e-9, RAY_STEP)


@dataclass(frozen=True)
class NoduleProfile:
    """The profile's values (``PROFILE_NAMES`` order) and the diameter they were taken at."""

    values: tuple[float, ...]
    diameter_mm: float


def _sample(
    hu_zyx: npt.NDArray[np.float32], points_mm: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """HU at points given in mm from the grid's centre (z, y, x), trilinear, edge-clamped."""
    centre = (np.asarray(hu_zyx.shape, dtype=np.float64) - 1.0) / 2.0
    index = (points_mm / PROFILE_SPACING_MM + centre).T
    return np.asarray(
        ndimage.map_coordinates(hu_zyx, index, order=1, mode="nearest", prefilter=False),
        dtype=np.float64,
    )


def profile_from_hu(hu_zyx: npt.ArrayLike, diameter_mm: float) -> NoduleProfile:
    """The profile of the nodule at the centre of a ``profile_spec`` HU grid.

    Args:
        hu_zyx: (48, 48, 48) HU around the nodule's centre, 1 mm voxels (``profile_spec``).
        diameter_mm: the nodule's mean diameter (the radiologist's, the catalogue's recorded
            one or the service's estimate); clamped to 3..30 mm.

    Raises:
        ProfileError: the diameter is not a positive finite number, or the grid is malformed.
    """
    hu = np.asarray(hu_zyx, dtype=np.float32)
    if hu.shape != PROFILE_SHAPE_ZYX or not np.all(np.isfinite(hu)):
        raise ProfileError(f"the profile grid must be finite with shape {PROFILE_SHAPE_ZYX}")
    if not (np.isfinite(diameter_mm) and diameter_mm > 0):
        raise ProfileError(f"the diameter must be a positive number of mm, got {diameter_mm}")
    diameter = float(np.clip(diameter_mm, MIN_DIAMETER_MM, MAX_DIAMETER_MM))
    radius = diameter / 2.0
    ball = _sample(hu, _ball_points() * radius)
    p10, p50, p90, p98 = np.percentile(ball, [10.0, 50.0, 90.0, 98.0])
    radii = _ray_radii()
    rays = _directions()
    points = rays[:, None, :] * (radii[None, :, None] * radius)
    along = _sample(hu, points.reshape(-1, 3)).reshape(len(rays), len(radii))
    rim = along[:, (radii >= 1.0) & (radii <= 1.5)]
    density = (
        ball.mean() / 1000.0,
        p10 / 1000.0,
        p50 / 1000.0,
        p90 / 1000.0,
        p98 / 1000.0,
        float(np.mean(ball >= CALCIUM_HU)),
        float(np.mean(ball <= LOW_HU)),
        float(along[:, np.argmin(np.abs(radii - 1.0))].mean()) / 1000.0,
        float(along[:, np.argmin(np.abs(radii - 1.5))].mean()) / 1000.0,
    )
    shape = _shape(along, radii, float(p50), rim)
    values = (float(np.log(diameter)), *map(float, density), *shape)
    return NoduleProfile(values=values, diameter_mm=diameter)


def _shape(
    along: npt.NDArray[np.float64],
    radii: npt.NDArray[np.float64],
    core_hu: float,
    rim: npt.NDArray[np.float64],
) -> tuple[float, ...]:
    """Boundary statistics of the rays (``along``: HU, rays x radii) around a core's HU."""
    threshold = (max(core_hu, LUNG_HU + 100.0) + LUNG_HU) / 2.0
    below = (along < threshold) & (radii[None, :] >= 0.25)
    # The first radius below the threshold on each ray; the reach where none is.
    first = np.where(below.any(axis=1), radii[np.argmax(below, axis=1)], RAY_REACH)
    mean = float(first.mean())
    return (
        mean,
        float(first.std() / max(mean, RAY_STEP)),
        float(first.min() / max(float(first.max()), RAY_STEP)),
        float(np.mean(first >= OPEN_RAY)),
        float(rim.mean(axis=1).std()) / 1000.0,
    )


def nodule_profile(
    source: VolumeSource,
    center_xyz: tuple[float, float, float],
    diameter_mm: float,
    spec: PatchSpec,
) -> NoduleProfile:
    """The profile of the nodule at a world point (``center_xyz``, mm, LPS), given its size.

    ``spec`` is the model's patch spec (its outside policy is kept).

    Raises:
        ProfileError: the diameter is unusable.
        model.preprocessing.CoordinateOutsideVolumeError: the point is outside the volume.
    """
    return profile_from_hu(patch_hu(source, center_xyz, profile_spec(spec)), diameter_mm)
