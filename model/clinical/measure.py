"""Size and type of a nodule from its mask, as a radiologist reads them: estimates, no diagnosis.

Everything here works on a boolean mask on a CT grid (``mask_zyx``, numpy z, y, x order) with
that grid's ``Geometry``; distances are world millimetres (voxel centres mapped through the full
direction matrix), so flipped or oblique grids measure the same.

- **Long and short axis** (Lung-RADS v2022, ACR): on each axial slice of the mask, the longest
  chord (long axis) and the widest extent perpendicular to it (short axis), edge to edge: the
  distance between the outermost voxel centres plus one voxel, the voxel size along that
  direction. The slice with the longest long axis is reported. **Mean diameter** = (long + short)
  / 2, rounded to 0.1 mm, as Lung-RADS v2022 asks. **Volume** = voxels x voxel volume (mm^3).
- **Type** from the HU inside the mask's core (the mask less one voxel at its in-plane edge,
  where partial volume with lung makes every nodule look part-solid; the whole mask when the
  core would keep fewer than 5 voxels): the solid fraction is the share of core voxels at or
  above ``SOLID_HU`` (-300 HU, the usual solid-component threshold). Ground-glass below
  ``GROUND_GLASS_MAX_SOLID`` (0.24), solid at or above ``SOLID_MIN_SOLID`` (0.29), part-solid
  between. The a-priori cut-points (0.15, 0.6) agreed with the LIDC readers' Texture on the real
  VOIs with kappa 0.25 on the whole mask and 0.39 on the core (most solid nodules called
  part-solid); 0.24 and 0.29 are the cut-points a patient-grouped 5-fold fit chose in 4 of 5
  folds, scoring kappa 0.62 (agreement 0.87) on the held-out patients
  (``bench/results/measure_lidc_vois.json``). Ground-glass versus solid is what this
  separates; part-solid nodules overlap solid ones in this fraction and are mostly called solid.
- **Lung-RADS v2022 size category at baseline** (no prior scan): solid < 6 mm -> 2, 6 to < 8 ->
  3, 8 to < 15 -> 4A, >= 15 -> 4B; ground-glass < 30 mm -> 2, >= 30 -> 3. Part-solid nodules
  need the solid component's own size and get none here. Categories from size alone ignore
  the modifiers (growth, new, perifissural, the S and X modifiers).
- **Region growing** (``grow_region``), for a query point without a mask: the voxels at or
  above ``GROW_HU`` (-600 HU: ground-glass and denser, not aerated lung) inside a ball (5, 7.5,
  10, 15 then ``max_radius_mm``: the first whose result stays clear of its surface wins; none
  does -> no mask), opened with a ball of ``CUT_RADIUS_MM`` (1.5 mm, chosen a priori: it cuts
  vessels and bridges under 3 mm thick), the component of the seed, dilated back by the same
  ball within the dense voxels. The seed is the densest voxel within 2 mm of the point.
- **The network's mask**: ``model.clinical.nodule_mask`` takes the mask branch's probabilities from
  the patch grid (``patch_geometry``) onto the CT's voxels, thresholds them at ``MASK_THRESHOLD``
  and keeps the component nearest the point (none within ``MASK_CENTER_REACH_MM``: no mask),
  then measures it as any mask. ``mask_from_probability`` and ``measure_patch_mask`` do the
  same on the patch grid itself (the benchmark's Dice against the readers' masks there).
- **Sphericity** (``sphericity``): pi^(1/3) (6 V)^(2/3) / A, 1 for a ball, with the surface A of
  the marching-cubes mesh (scikit-image).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from skimage.measure import marching_cubes, mesh_surface_area

from model.ct.geometry import Geometry, axis_aligned, spacing_zyx
from model.ct.volume import VolumeSource
from model.preprocessing import PatchSpec

NoduleType = Literal["solid", "part-solid", "ground-glass"]
LungRadsCategory = Literal["2", "3", "4A", "4B"]

#: HU at and above which a voxel counts as solid component.
SOLID_HU = -300.0
#: Solid fraction (of the core) below which a nodule is ground-glass.
GROUND_GLASS_MAX_SOLID = 0.24
#: Solid fraction (of the core) at and above which a nodule is solid.
SOLID_MIN_SOLID = 0.29
#: A core smaller than this falls back to the whole mask.
MIN_CORE_VOXELS = 5
#: How a grown estimate was made, as answers name it.
GROW_METHOD = "region growing from the query point (>= -600 HU, connected, within 20 mm)"
#: Region growing keeps voxels at or above this HU.
GROW_HU = -600.0
#: Radii (mm) of the balls region growing tries, smallest first.
GROW_RADII_MM = (5.0, 7.5, 10.0, 15.0)
#: Region growing cuts connections thinner than twice this (mm): vessels, chest-wall bridges.
CUT_RADIUS_MM = 1.5
#: The most voxels region growing reads and works on (a 20 mm ball at 0.2 mm voxels): bounds its
#: memory whatever the voxel size.
MAX_GROW_VOXELS = 8_000_000
#: The most voxels of the vessel cut's ball element (33^3: voxels of about 0.094 mm and up).
MAX_ELEMENT_VOXELS = 33**3
#: Where the seed is searched around the query point (mm).
SEED_RADIUS_MM = 2.0
#: Lung-RADS v2022 baseline size bounds (mm, mean diameter) of solid nodules: 2 | 3 | 4A | 4B.
SOLID_BOUNDS_MM = (6.0, 8.0, 15.0)
#: Ground-glass nodules: category 2 below this mean diameter (mm), 3 from it.
GROUND_GLASS_BOUND_MM = 30.0

BoolArray = npt.NDArray[np.bool_]


class MeasureError(ValueError):
    """A mask that cannot be measured (empty, wrong shape)."""


@dataclass(frozen=True)
class AxialAxes:
    """Long and short axis on one axial slice (mm, edge to edge)."""

    long_axis_mm: float
    short_axis_mm: float
    slice_index: int
    """The slice (numpy z index of the mask's grid) they were measured on."""


@dataclass(frozen=True)
class NoduleMeasurement:
    """Size, type and Lung-RADS size category of one nodule mask (estimates)."""

    long_axis_mm: float
    short_axis_mm: float
    mean_diameter_mm: float
    """(long + short) / 2, rounded to 0.1 mm."""
    volume_mm3: float
    n_voxels: int
    slice_index: int
    nodule_type: NoduleType | None
    """None without HU values."""
    solid_fraction: float | None
    lung_rads: LungRadsCategory | None
    """Baseline size category; None for part-solid nodules and without a type."""


def _chord_and_width(points_mm: npt.NDArray[np.float64], pixel_mm: float) -> tuple[float, float]:
    """Longest chord of 2-D points and the widest extent perpendicular to it, edge to edge."""
    if len(points_mm) == 1:
        return pixel_mm, pixel_mm
    if len(points_mm) > 400:
        # The extremes lie on the boundary: the convex hull keeps the pairwise search small
        # (collinear points have no hull; then all of them are searched).
        with contextlib.suppress(QhullError):
            points_mm = points_mm[ConvexHull(points_mm).vertices]
    diff = points_mm[:, None, :] - points_mm[None, :, :]
    dist = np.sqrt((diff**2).sum(-1))
    i, j = np.unravel_index(int(np.argmax(dist)), dist.shape)
    long_mm = float(dist[i, j])
    if long_mm == 0.0:
        return pixel_mm, pixel_mm
    along = (points_mm[j] - points_mm[i]) / long_mm
    across = np.array([-along[1], along[0]])
    projected = points_mm @ across
    return long_mm + pixel_mm, float(projected.max() - projected.min()) + pixel_mm


def _checked_mask(mask_zyx: BoolArray, geometry: Geometry) -> BoolArray:
    """The mask as bool, non-empty and on the geometry's grid.

    Raises:
        MeasureError: an empty mask, or one whose shape is not the geometry's.
    """
    mask = np.asarray(mask_zyx, dtype=bool)
    if mask.shape != geometry.shape_zyx:
        raise MeasureError(f"mask shape {mask.shape} is not the grid's {geometry.shape_zyx}")
    if not mask.any():
        raise MeasureError("the mask is empty")
    return mask


def axial_axes(mask_zyx: BoolArray, geometry: Geometry) -> AxialAxes:
    """Long and short axis on the axial slice where the long axis is longest.

    Raises:
        MeasureError: an empty mask, or one whose shape is not the geometry's.
    """
    mask = _checked_mask(mask_zyx, geometry)
    _, sy, sx = spacing_zyx(geometry)
    pixel_mm = float(np.sqrt(sx * sy))  # in-plane voxel size (one voxel, edge to edge)
    best: AxialAxes | None = None
    for k in np.flatnonzero(mask.any(axis=(1, 2))).tolist():
        rows, cols = np.nonzero(mask[k])
        index_zyx = np.stack([np.full(len(rows), k), rows, cols], axis=1).astype(np.float64)
        world = geometry.index_zyx_to_world(index_zyx)
        # In-plane coordinates of the slice: world points projected on its two array axes.
        d = geometry.direction_matrix
        plane = np.stack([world @ d[:, 0], world @ d[:, 1]], axis=1)
        long_mm, short_mm = _chord_and_width(plane, pixel_mm)
        if best is None or long_mm > best.long_axis_mm:
            best = AxialAxes(long_mm, min(short_mm, long_mm), int(k))
    assert best is not None
    return best


def mask_core(mask_zyx: BoolArray) -> BoolArray:
    """The mask less one voxel at its in-plane edge (the whole mask if too little is left)."""
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    core = ndimage.binary_erosion(mask_zyx, in_plane)
    return np.asarray(core if core.sum() >= MIN_CORE_VOXELS else mask_zyx, dtype=bool)


def solid_fraction(hu_in_mask: npt.ArrayLike) -> float:
    """Share of the mask's voxels at or above ``SOLID_HU``."""
    hu = np.asarray(hu_in_mask, dtype=np.float64)
    if hu.size == 0:
        raise MeasureError("the mask is empty")
    return float((hu >= SOLID_HU).mean())


def nodule_type(fraction: float) -> NoduleType:
    """Solid, part-solid or ground-glass from the solid fraction (module docstring)."""
    if fraction < GROUND_GLASS_MAX_SOLID:
        return "ground-glass"
    if fraction < SOLID_MIN_SOLID:
        return "part-solid"
    return "solid"


def lung_rads_category(kind: NoduleType, mean_diameter_mm: float) -> LungRadsCategory | None:
    """Lung-RADS v2022 baseline category from size alone; None for part-solid nodules."""
    if kind == "ground-glass":
        return "2" if mean_diameter_mm < GROUND_GLASS_BOUND_MM else "3"
    if kind == "part-solid":
        return None
    low, mid, high = SOLID_BOUNDS_MM
    if mean_diameter_mm < low:
        return "2"
    if mean_diameter_mm < mid:
        return "3"
    if mean_diameter_mm < high:
        return "4A"
    return "4B"


def measure(
    mask_zyx: BoolArray, geometry: Geometry, hu_zyx: npt.ArrayLike | None = None
) -> NoduleMeasurement:
    """Size (and, with the HU on the same grid, type and Lung-RADS size category) of a mask."""
    axes = axial_axes(mask_zyx, geometry)
    mask = np.asarray(mask_zyx, dtype=bool)
    n_voxels = int(mask.sum())
    sx, sy, sz = geometry.spacing_xyz
    mean_mm = round((axes.long_axis_mm + axes.short_axis_mm) / 2.0, 1)
    fraction: float | None = None
    kind: NoduleType | None = None
    category: LungRadsCategory | None = None
    if hu_zyx is not None:
        hu = np.asarray(hu_zyx)
        if hu.shape != mask.shape:
            raise MeasureError(f"HU shape {hu.shape} is not the mask's {mask.shape}")
        fraction = solid_fraction(hu[mask_core(mask)])
        kind = nodule_type(fraction)
        category = lung_rads_category(kind, mean_mm)
    return NoduleMeasurement(
        long_axis_mm=round(axes.long_axis_mm, 1),
        short_axis_mm=round(axes.short_axis_mm, 1),
        mean_diameter_mm=mean_mm,
        volume_mm3=round(n_voxels * sx * sy * sz, 1),
        n_voxels=n_voxels,
        slice_index=axes.slice_index,
        nodule_type=kind,
        solid_fraction=None if fraction is None else round(fraction, 3),
        lung_rads=category,
    )


#: How the network's mask branch found the nodule (``model.clinical.nodule_mask``).
NETWORK_METHOD = (
    "the network's mask branch (mean of 8 flips, >= 0.5, the component at the point, on the "
    "CT's voxels)"
)
#: How an uploaded mask was measured (the service's upload parser).
MASK_METHOD = "from the uploaded mask, on the CT's grid"
#: The method of an estimate in two words (answers, the viewer, the SR and SEG name it).
EstimatedBy = Literal["network mask", "region growing", "uploaded mask"]
_ESTIMATED_BY: dict[str, EstimatedBy] = {
    NETWORK_METHOD: "network mask",
    GROW_METHOD: "region growing",
    MASK_METHOD: "uploaded mask",
}


def estimated_by(method: str) -> EstimatedBy:
    """The two-word name of an estimate's method (one of the ``*_METHOD`` strings).

    Raises:
        ValueError: a string that is none of them.
    """
    try:
        return _ESTIMATED_BY[method]
    except KeyError:
        raise ValueError(f"unknown size method {method!r}") from None


#: How a ruler measurement was made, as answers and the SR name it.
RULER_METHOD = "measured by the user: long and short axis on an axial slice (ruler)"
#: The largest axis a ruler measurement may give (mm): beyond it, no lung nodule.
RULER_MAX_MM = 300.0


@dataclass(frozen=True)
class RulerMeasurement:
    """A radiologist's own long and short axis of the queried nodule (mm, one axial slice).

    The Lung-RADS size category takes the type from the image's estimate; without one the
    nodule is taken as solid (``type_assumed``), whose bounds give the higher category.
    """

    long_axis_mm: float
    short_axis_mm: float
    mean_diameter_mm: float
    """(long + short) / 2, rounded to 0.1 mm (Lung-RADS v2022)."""
    nodule_type: NoduleType | None
    type_assumed: bool
    lung_rads: LungRadsCategory | None


def ruler_measurement(
    long_axis_mm: float, short_axis_mm: float, nodule_type: NoduleType | None = None
) -> RulerMeasurement:
    """The user's axes as a measurement (the larger is the long axis), with Lung-RADS.

    Raises:
        MeasureError: an axis that is not a positive length up to ``RULER_MAX_MM``.
    """
    axes = (float(long_axis_mm), float(short_axis_mm))
    if not all(np.isfinite(a) and 0.0 < a <= RULER_MAX_MM for a in axes):
        raise MeasureError(f"ruler axes must be lengths in (0, {RULER_MAX_MM:g}] mm, got {axes}")
    long_mm, short_mm = max(axes), min(axes)
    mean_mm = round((long_mm + short_mm) / 2.0, 1)
    kind = nodule_type if nodule_type is not None else "solid"
    return RulerMeasurement(
        long_axis_mm=round(long_mm, 1),
        short_axis_mm=round(short_mm, 1),
        mean_diameter_mm=mean_mm,
        nodule_type=nodule_type,
        type_assumed=nodule_type is None,
        lung_rads=lung_rads_category(kind, mean_mm),
    )


def grow_region(
    hu_zyx: npt.ArrayLike,
    geometry: Geometry,
    center_xyz: tuple[float, float, float],
    max_radius_mm: float = 20.0,
) -> BoolArray:
    """A nodule mask grown from a world point (module docstring).

    Grown inside balls of growing radius (``GROW_RADII_MM`` up to ``max_radius_mm``); the first
    whose component stays clear of the ball's surface is the nodule. Empty when nothing dense is
    at the point, or when the component reaches the surface of every ball (the nodule cannot be
    told apart from the wall or vessels it touches): no estimate rather than a wrong one.

    Raises:
        MeasureError: the point lies outside the grid, or the HU array is not the grid's shape.
    """
    hu = np.asarray(hu_zyx, dtype=np.float32)
    if hu.shape != geometry.shape_zyx:
        raise MeasureError(f"HU shape {hu.shape} is not the grid's {geometry.shape_zyx}")
    if not geometry.contains_world(center_xyz):
        raise MeasureError(f"the point {center_xyz} lies outside the volume")
    # Only the box that holds the ball is searched (a whole CT would cost seconds).
    start, stop = _ball_box(geometry, center_xyz, max_radius_mm)
    box = tuple(slice(a, b) for a, b in zip(start, stop, strict=True))
    sub = hu[box]
    sub_geometry = geometry.with_shape_zyx((sub.shape[0], sub.shape[1], sub.shape[2]), start)
    grid = np.indices(sub.shape, dtype=np.float64).reshape(3, -1).T
    world = sub_geometry.index_zyx_to_world(grid)
    distance = np.linalg.norm(world - np.asarray(center_xyz), axis=1).reshape(sub.shape)
    mask = np.zeros(hu.shape, dtype=bool)
    shell_mm = float(max(spacing_zyx(geometry)))
    for radius in [r for r in GROW_RADII_MM if r < max_radius_mm] + [max_radius_mm]:
        region = _grow_in_ball(sub, sub_geometry, distance, radius)
        if not region.any():
            return mask
        if not (region & (distance > radius - shell_mm)).any():
            mask[box] = region
            return mask
    return mask


def mean_hu_in_sphere(
    source: VolumeSource, center_xyz: tuple[float, float, float], radius_mm: float
) -> float:
    """Mean HU of the voxels whose centres lie within ``radius_mm`` of a world point.

    A density a radiologist reads off a nodule (the evaluation's diameter + density baseline
    takes a sphere of 0.75 x the radius). At least the voxel nearest the point counts, so a
    sphere smaller than a voxel still has a value. Reads only the box around the sphere.

    Raises:
        MeasureError: the point lies outside the volume.
    """
    geometry = source.geometry
    if not geometry.contains_world(center_xyz):
        shown = ", ".join(f"{float(v):g}" for v in center_xyz)
        raise MeasureError(f"the point ({shown}) lies outside the volume")
    start, stop = _ball_box(geometry, center_xyz, radius_mm)
    hu = np.asarray(source.read_box(start, stop), dtype=np.float64)
    box = geometry.with_shape_zyx((hu.shape[0], hu.shape[1], hu.shape[2]), start)
    grid = np.indices(hu.shape, dtype=np.float64).reshape(3, -1).T
    distance = np.linalg.norm(box.index_zyx_to_world(grid) - np.asarray(center_xyz), axis=1)
    inside = distance <= max(float(radius_mm), float(distance.min()))
    return float(hu.reshape(-1)[inside].mean())


def _ball_box(
    geometry: Geometry, center_xyz: tuple[float, float, float], radius_mm: float
) -> tuple[list[int], list[int]]:
    """``[start, stop)`` voxel indices (z, y, x) of the grid's box that holds a ball."""
    center_zyx = geometry.world_to_index_zyx(np.asarray(center_xyz))
    reach = np.ceil(radius_mm / np.asarray(spacing_zyx(geometry))) + 1
    start = np.clip(np.floor(center_zyx - reach), 0, None).astype(int)
    stop = np.minimum(np.ceil(center_zyx + reach).astype(int) + 1, geometry.shape_zyx)
    return [int(v) for v in start], [int(v) for v in stop]


def _grow_in_ball(
    hu: npt.NDArray[np.float32],
    geometry: Geometry,
    distance: npt.NDArray[np.float64],
    radius_mm: float,
) -> BoolArray:
    """The seed's dense component inside one ball (``distance``: mm from the point)."""
    dense = (hu >= GROW_HU) & (distance <= radius_mm)
    # Opening with a ball of CUT_RADIUS_MM cuts the vessels (and chest-wall bridges) thinner
    # than its diameter that touch the nodule; one dilation with the same ball, kept inside the
    # dense voxels, gives the nodule back its edge without reattaching what was cut.
    ball = _ball_element(geometry, CUT_RADIUS_MM)
    opened = ndimage.binary_opening(dense, structure=ball)
    near = distance <= SEED_RADIUS_MM
    candidates = np.where(near & opened, hu, -np.inf)
    if not np.isfinite(candidates).any():
        candidates = np.where(near & dense, hu, -np.inf)  # too small to survive the opening
        opened = dense
    if not np.isfinite(candidates).any():
        return np.zeros(hu.shape, dtype=bool)
    seed = np.unravel_index(int(np.argmax(candidates)), hu.shape)
    labels, _ = ndimage.label(opened)
    core = labels == labels[seed]
    return np.asarray(ndimage.binary_dilation(core, structure=ball) & dense)


def _ball_element(geometry: Geometry, radius_mm: float) -> BoolArray:
    """A structuring element: the voxels of the grid within ``radius_mm`` of the centre one."""
    reach = [max(1, int(radius_mm // s)) for s in spacing_zyx(geometry)]
    z, y, x = np.ogrid[tuple(slice(-r, r + 1) for r in reach)]
    sz, sy, sx = spacing_zyx(geometry)
    return np.asarray((z * sz) ** 2 + (y * sy) ** 2 + (x * sx) ** 2 <= radius_mm**2 + 1e-9)


@dataclass(frozen=True)
class NoduleRegion:
    """A nodule mask in a box of the series it lies in, measured (grown, or uploaded)."""

    mask_zyx: BoolArray
    start_zyx: tuple[int, int, int]
    """The box's first voxel in the series (index, z y x)."""
    geometry: Geometry
    """Of the box (its origin at ``start_zyx``)."""
    measurement: NoduleMeasurement


def _check_grow_budget(geometry: Geometry, box_voxels: int) -> None:
    """Refuse voxels so small that region growing would not fit in memory.

    Its box and its ball element (the vessel cut's, ``CUT_RADIUS_MM``) grow as (mm / spacing)^3.

    Raises:
        MeasureError: the box or the element is over budget (the message gives the voxel size).
    """
    reach = np.ceil(CUT_RADIUS_MM / np.asarray(spacing_zyx(geometry)))
    element = int(np.prod(2 * reach + 1))
    if box_voxels <= MAX_GROW_VOXELS and element <= MAX_ELEMENT_VOXELS:
        return
    smallest = min(float(v) for v in geometry.spacing_xyz)
    raise MeasureError(
        f"the voxels ({smallest:g} mm) are too small to estimate a size by region growing "
        f"(it needs voxels of about 0.1 mm or more); measure the nodule instead"
    )


def grow_at(
    source: VolumeSource, center_xyz: tuple[float, float, float], max_radius_mm: float = 20.0
) -> NoduleRegion | None:
    """The nodule at a world point of a CT by region growing, measured; None when nothing dense.

    Reads only the box around the ball (a region read).

    Raises:
        MeasureError: the point lies outside the volume, or the voxels are too small.
    """
    geometry = source.geometry
    if not geometry.contains_world(center_xyz):
        shown = ", ".join(f"{float(v):g}" for v in center_xyz)
        raise MeasureError(f"the point ({shown}) lies outside the volume")
    start, stop = _ball_box(geometry, center_xyz, max_radius_mm)
    _check_grow_budget(geometry, int(np.prod(np.asarray(stop) - np.asarray(start))))
    hu = np.asarray(source.read_box(start, stop), dtype=np.float32)
    box = geometry.with_shape_zyx((hu.shape[0], hu.shape[1], hu.shape[2]), start)
    mask = grow_region(hu, box, center_xyz, max_radius_mm)
    if not mask.any():
        return None
    first = (int(start[0]), int(start[1]), int(start[2]))
    return NoduleRegion(mask, first, box, measure(mask, box, hu))


def estimate_at(
    source: VolumeSource, center_xyz: tuple[float, float, float], max_radius_mm: float = 20.0
) -> NoduleMeasurement | None:
    """Size and type of the nodule at a world point of a CT, by region growing (no mask).

    Raises:
        MeasureError: the point lies outside the volume.
    """
    grown = grow_at(source, center_xyz, max_radius_mm)
    return grown.measurement if grown is not None else None


#: Mask probability at and above which a patch voxel belongs to the network's mask.
MASK_THRESHOLD = 0.5
#: The farthest (mm) the network's mask component may lie from the patch centre (the query
#: point) and still be taken as the queried nodule.
MASK_CENTER_REACH_MM = 5.0


def patch_geometry(center_xyz: npt.ArrayLike, spec: PatchSpec) -> Geometry:
    """The geometry of the patch grid around ``center_xyz`` (``preprocessing.patch_grid_xyz``).

    Axis-aligned (identity direction), ``spec.spacing_mm`` along every axis, the patch centre at
    ``center_xyz``: voxel (0, 0, 0)'s centre lies at ``center - (shape - 1) / 2 * spacing``.
    """
    center = np.asarray(center_xyz, dtype=np.float64).reshape(3)
    d, h, w = spec.patch_shape_zyx
    s = spec.spacing_mm
    origin_xyz = center - np.array([w - 1, h - 1, d - 1], dtype=np.float64) / 2.0 * s
    return axis_aligned(spec.patch_shape_zyx, (s, s, s), tuple(float(v) for v in origin_xyz))


def mask_from_probability(
    probability_zyx: npt.ArrayLike,
    spacing_mm: float,
    *,
    threshold: float = MASK_THRESHOLD,
    reach_mm: float = MASK_CENTER_REACH_MM,
) -> BoolArray | None:
    """The nodule mask in a patch's mask probabilities (D, H, W): the centre's component.

    The voxels at or above ``threshold``, split into face-connected components; the component
    with a voxel centre nearest the patch centre is kept. None when no voxel reaches the
    threshold, or the nearest component lies farther than ``reach_mm`` from the centre (the
    network found something else, not the queried nodule).

    Raises:
        MeasureError: the probabilities are not a 3-D array.
    """
    probability = np.asarray(probability_zyx, dtype=np.float32)
    if probability.ndim != 3:
        raise MeasureError(f"probabilities must be (D, H, W), got shape {probability.shape}")
    labels, n = ndimage.label(probability >= threshold)
    if n == 0:
        return None
    center = (np.asarray(probability.shape, dtype=np.float64) - 1.0) / 2.0
    index = np.indices(probability.shape, dtype=np.float64)
    distance_mm = np.sqrt(((index - center[:, None, None, None]) ** 2).sum(axis=0)) * spacing_mm
    nearest = np.asarray(ndimage.minimum(distance_mm, labels, index=np.arange(1, n + 1)))
    best = int(np.argmin(nearest))
    if float(nearest[best]) > reach_mm:
        return None
    return np.asarray(labels == best + 1)


@dataclass(frozen=True)
class PatchNodule:
    """The network's mask of the queried nodule on its patch grid, measured."""

    mask_zyx: BoolArray
    geometry: Geometry
    """The patch grid's (``patch_geometry``)."""
    measurement: NoduleMeasurement


def measure_patch_mask(
    probability_zyx: npt.ArrayLike,
    center_xyz: npt.ArrayLike,
    spec: PatchSpec,
    hu_zyx: npt.ArrayLike | None = None,
    *,
    reach_mm: float = MASK_CENTER_REACH_MM,
) -> PatchNodule | None:
    """Size (and type, with the patch's HU) of the nodule in a patch's mask probabilities.

    Args:
        probability_zyx: (D, H, W) = ``spec.patch_shape_zyx`` mask probabilities (the sigmoid of
            ``NoduleNet.segment`` on the patch cut around ``center_xyz`` with ``spec``).
        center_xyz: the patch centre, world mm (LPS).
        spec: the patch's spec (the model card's preprocessing).
        hu_zyx: optional HU on the same grid (``preprocessing.patch_hu``), for the type.
        reach_mm: see ``mask_from_probability``.

    Returns:
        The mask and its measurement; None when the network gives no mask at the centre.

    Raises:
        MeasureError: probabilities (or HU) that are not the patch's shape.
    """
    probability = np.asarray(probability_zyx, dtype=np.float32)
    if probability.shape != tuple(spec.patch_shape_zyx):
        raise MeasureError(
            f"probabilities {probability.shape} are not the patch's {spec.patch_shape_zyx}"
        )
    mask = mask_from_probability(probability, spec.spacing_mm, reach_mm=reach_mm)
    if mask is None:
        return None
    geometry = patch_geometry(center_xyz, spec)
    return PatchNodule(mask, geometry, measure(mask, geometry, hu_zyx))


def _surface_area_mm2(mask_zyx: BoolArray, spacing: tuple[float, float, float]) -> float:
    """Surface of a mask (mm^2): the area of its marching-cubes mesh at level 0.5."""
    padded = np.pad(np.asarray(mask_zyx, dtype=np.float32), 1)  # closes the mesh at the edges
    verts, faces, _, _ = marching_cubes(padded, level=0.5, spacing=spacing)  # type: ignore[no-untyped-call]
    return float(mesh_surface_area(verts, faces))  # type: ignore[no-untyped-call]


def sphericity(mask_zyx: BoolArray, geometry: Geometry) -> float:
    """pi^(1/3) (6 V)^(2/3) / A of a mask: 1 for a ball, less for elongated or spiculated shapes.

    V is the voxel count times the voxel volume, A the marching-cubes surface (module
    docstring); digitised balls of a few voxels' radius score about 0.9, not 1.

    Raises:
        MeasureError: an empty mask, or one whose shape is not the geometry's.
    """
    mask = _checked_mask(mask_zyx, geometry)
    spacing = spacing_zyx(geometry)
    volume = float(mask.sum()) * float(np.prod(spacing))
    area = _surface_area_mm2(mask, spacing)
    return float(np.pi ** (1.0 / 3.0) * (6.0 * volume) ** (2.0 / 3.0) / area)


def hu_percentiles(
    hu_zyx: npt.ArrayLike, mask_zyx: BoolArray, q: tuple[float, ...] = (10.0, 50.0, 90.0)
) -> tuple[float, ...]:
    """Percentiles ``q`` of the HU inside a mask (the solid fraction is ``solid_fraction``).

    Raises:
        MeasureError: an empty mask, or HU that is not the mask's shape.
    """
    hu = np.asarray(hu_zyx, dtype=np.float64)
    mask = np.asarray(mask_zyx, dtype=bool)
    if hu.shape != mask.shape:
        raise MeasureError(f"HU shape {hu.shape} is not the mask's {mask.shape}")
    if not mask.any():
        raise MeasureError("the mask is empty")
    return tuple(float(v) for v in np.percentile(hu[mask], q))
