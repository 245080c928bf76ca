"""THE one patch function: training, indexing and the service all cut patches here.

A patch is a cube sampled on an isotropic grid aligned with the world (LPS) axes and centred on a
world point, so the same nodule gives the same patch whatever the scan's spacing, slice order or
direction matrix. Only the voxels the grid touches are read from the source (a region read) and
only the grid points are interpolated (trilinear); nothing resamples a whole volume.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import ndimage

from model.ct.geometry import Geometry
from model.ct.volume import F32Array, VolumeSource

FloatArray = npt.NDArray[np.float64]

#: HU given to grid points outside the scanned volume: air.
AIR_HU = -1000.0

PositiveInt = Annotated[int, Field(ge=1, le=256)]

#: What a patch holds where its grid leaves the scanned volume (``PatchSpec.outside``).
OutsidePolicy = Literal["air", "edge"]


class CoordinateOutsideVolumeError(ValueError):
    """The requested patch centre is not inside the scanned volume."""


class PatchSpec(BaseModel):
    """How a patch is cut; stored in the model card so every caller uses the same values.

    Attributes:
        patch_shape_zyx: output shape (D, H, W) in voxels, numpy order.
        spacing_mm: isotropic output voxel size in millimetres.
        hu_window: (low, high) HU; values are clipped to it and scaled to [0, 1].
        outside: what grid points outside the scanned volume hold. ``air`` (-1000 HU, the
            default) suits whole scans, where only the chest wall's far side is ever outside;
            ``edge`` repeats the nearest voxel of the volume, so a crop that ends one slice
            beyond a nodule (LIDC VOIs, LUNA22-style crops) is not framed by an artificial slab
            of air that no full scan shows.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The defaults are the default model's: 32^3 voxels of 1.25 mm (a 40 mm field, Dou et al.'s
    # largest), what `nodule-index train` trains with unless told otherwise.
    patch_shape_zyx: tuple[PositiveInt, PositiveInt, PositiveInt] = (32, 32, 32)
    spacing_mm: float = Field(default=1.25, gt=0.05, le=10.0)
    hu_window: tuple[float, float] = (-1000.0, 400.0)
    outside: OutsidePolicy = "air"

    @model_validator(mode="after")
    def _window_ordered(self) -> PatchSpec:
        low, high = self.hu_window
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ValueError(f"hu_window must be finite with low < high, got {self.hu_window}")
        return self


#: The one default patch spec: the one the default model is trained with. A model's own spec
#: (its card) always wins; this is for tools run without a model.
DEFAULT_SPEC = PatchSpec()


def mask_spec(spec: PatchSpec) -> PatchSpec:
    """``spec`` for cutting a 0 / 1 mask volume with the one patch function.

    The model's grid, the values kept as they are (a window of [0, 1]), so each voxel holds its
    share of nodule after interpolation; outside the volume is no nodule.
    """
    return spec.model_copy(update={"hu_window": (0.0, 1.0), "outside": "air"})


def patch_grid_xyz(center_xyz: npt.ArrayLike, spec: PatchSpec) -> npt.NDArray[np.float64]:
    """World coordinates (mm, LPS) of every patch voxel centre, shape (D, H, W, 3) as x, y, z.

    Patch axis 0 runs along world +z, axis 1 along +y and axis 2 along +x, so a patch is always in
    the LUNA16/ITK orientation regardless of the source's direction matrix.
    """
    d, h, w = spec.patch_shape_zyx
    s = spec.spacing_mm
    cx, cy, cz = (float(v) for v in np.asarray(center_xyz, dtype=np.float64).reshape(3))
    z = cz + (np.arange(d) - (d - 1) / 2.0) * s
    y = cy + (np.arange(h) - (h - 1) / 2.0) * s
    x = cx + (np.arange(w) - (w - 1) / 2.0) * s
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    return np.stack([xx, yy, zz], axis=-1)


def _axis_offsets_mm(spec: PatchSpec) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Offsets (mm) of the patch voxel centres from the patch centre along world x, y and z."""
    d, h, w = spec.patch_shape_zyx
    s = spec.spacing_mm
    return tuple(  # type: ignore[return-value]
        (np.arange(n) - (n - 1) / 2.0) * s for n in (w, h, d)
    )


def _axis_matches(m_zyx: FloatArray) -> list[int] | None:
    """The world axis of each array axis for axis-aligned volumes, None for oblique ones.

    Axis-aligned means the direction matrix is a signed permutation (identity, flips, swaps).
    ``m_zyx`` is ``Geometry.world_to_index_affine()[0]``.
    """
    nonzero = np.abs(m_zyx) > 1e-9 * np.abs(m_zyx).max()
    if not (np.all(nonzero.sum(axis=0) == 1) and np.all(nonzero.sum(axis=1) == 1)):
        return None
    return [int(np.flatnonzero(row)[0]) for row in nonzero]


def _lerp_axis(values: F32Array, axis: int, coords: FloatArray, cval: float | None) -> F32Array:
    """Linear interpolation along one axis at continuous ``coords``; ``cval`` outside.

    Matches ``scipy.ndimage.map_coordinates(order=1, mode="grid-constant")`` along one axis
    (``mode="nearest"`` when ``cval`` is None: the edge voxel is repeated); applied along all three
    axes of an aligned grid it is exactly trilinear interpolation.
    """
    n = values.shape[axis]
    if cval is None:
        coords = np.clip(coords, 0.0, n - 1.0)
        cval = 0.0  # never read: clipped coordinates stay inside
    pad = [(0, 0)] * values.ndim
    pad[axis] = (1, 1)
    padded = np.pad(values, pad, constant_values=cval)
    lower = np.floor(coords)
    weight = (coords - lower).astype(np.float32)
    i0 = lower.astype(np.int64) + 1  # +1: index into the padded axis
    outside = (coords <= -1.0) | (coords >= n)
    i0 = np.where(outside, 0, i0)
    weight = np.where(outside, np.float32(0.0), weight)
    shape = [1] * values.ndim
    shape[axis] = coords.size
    w = weight.reshape(shape)
    low = np.take(padded, i0, axis=axis)
    high = np.take(padded, np.minimum(i0 + 1, n + 1), axis=axis)
    # low + (high - low) * w keeps constant runs (air next to air) exact.
    return np.asarray(low + (high - low) * w, dtype=np.float32)


def patch_hu(source: VolumeSource, center_xyz: npt.ArrayLike, spec: PatchSpec) -> F32Array:
    """Patch of HU values (clipped to the window) around a world point, before scaling.

    Args:
        source: any volume or region reader (``CTVolume``, MetaImage or DICOM region source).
        center_xyz: patch centre in world mm, LPS (LUNA16 ``coordX, coordY, coordZ``).
        spec: patch shape, isotropic spacing and HU window.

    Returns:
        float32 array of shape ``spec.patch_shape_zyx`` in HU, within ``spec.hu_window``.

    Raises:
        CoordinateOutsideVolumeError: the centre is not inside the volume.
        ValueError: the centre is not 3 finite numbers.
    """
    try:
        center = np.asarray(center_xyz, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"center_xyz must be 3 numbers (mm), got {center_xyz!r}") from None
    if center.shape != (3,) or not np.all(np.isfinite(center)):
        raise ValueError(f"center_xyz must be 3 finite numbers (mm), got {center.tolist()}")
    geometry = source.geometry
    if not geometry.contains_world(center):
        low, high = geometry.extent_world_xyz()
        raise CoordinateOutsideVolumeError(
            f"center_xyz {[round(float(v), 2) for v in center]} mm is outside the volume "
            f"(world extent x {low[0]:.1f}..{high[0]:.1f}, y {low[1]:.1f}..{high[1]:.1f}, "
            f"z {low[2]:.1f}..{high[2]:.1f} mm)"
        )
    low_hu, high_hu = spec.hu_window
    cval = max(AIR_HU, low_hu) if spec.outside == "air" else None
    m_zyx, b_zyx = geometry.world_to_index_affine()
    base = m_zyx @ center + b_zyx
    offsets = _axis_offsets_mm(spec)  # along world x, y, z
    # Index of every grid point along each array axis, as a sum of per-world-axis terms:
    # index_zyx[k, j, i] = base + M[:, x] * ox[i] + M[:, y] * oy[j] + M[:, z] * oz[k].
    terms = [np.outer(offsets[c], m_zyx[:, c]) for c in range(3)]  # each (n_c, 3)
    lo = base + sum(t.min(axis=0) for t in terms)
    hi = base + sum(t.max(axis=0) for t in terms)
    shape = np.asarray(geometry.shape_zyx)
    # The box of source voxels that trilinear sampling of the grid touches, clipped to the volume.
    start = np.clip(np.floor(lo).astype(np.int64), 0, shape - 1)
    stop = np.clip(np.floor(hi).astype(np.int64) + 2, start + 1, shape)
    region = source.read_box(start.tolist(), stop.tolist())
    if not np.all(np.isfinite(region)):
        raise ValueError("the volume contains NaN or infinite values near the requested centre")
    # Clip before interpolating so scanner padding (-2048, -3024 HU) does not bleed into tissue.
    region = np.clip(region, low_hu, high_hu).astype(np.float32, copy=False)
    local = base - start
    matches = _axis_matches(m_zyx)
    if matches is not None:
        # Axis-aligned volume: trilinear = three 1-D linear passes (much faster than a gather).
        out = region
        for axis, world_axis in enumerate(matches):
            coords = local[axis] + offsets[world_axis] * m_zyx[axis, world_axis]
            out = _lerp_axis(out, axis, coords, cval)
        # Array axis r now holds world axis matches[r]; patch axes are world z, y, x.
        order = [matches.index(c) for c in (2, 1, 0)]
        return np.ascontiguousarray(np.transpose(out, order), dtype=np.float32)
    grid = (
        local + terms[2][:, None, None, :] + terms[1][None, :, None, :] + terms[0][None, None, :, :]
    )
    if cval is None:
        # Edge replication of an oblique volume: clamp to the region, which (clipped to the
        # volume) ends where the volume ends, so its edge voxels are the volume's.
        flat = np.clip(grid.reshape(-1, 3), 0.0, np.asarray(region.shape) - 1.0).T
        sampled = ndimage.map_coordinates(region, flat, order=1, mode="nearest", prefilter=False)
    else:
        sampled = ndimage.map_coordinates(
            region,
            grid.reshape(-1, 3).T,
            order=1,
            mode="grid-constant",
            cval=cval,
            prefilter=False,
        )
    return np.asarray(sampled.reshape(spec.patch_shape_zyx), dtype=np.float32)


def extract_patch(source: VolumeSource, center_xyz: npt.ArrayLike, spec: PatchSpec) -> F32Array:
    """Cut, window and scale one patch exactly as the model sees it.

    Args:
        source: HU volume or region reader with its ITK geometry.
        center_xyz: patch centre in world mm, LPS (LUNA16 ``coordX, coordY, coordZ``).
        spec: the model card's preprocessing spec.

    Returns:
        float32 array of shape ``spec.patch_shape_zyx`` (D, H, W), values in [0, 1]
        (0 = window low, 1 = window high); points outside the volume are air, or the nearest
        voxel's value, as ``spec.outside`` says.
    """
    low, high = spec.hu_window
    hu = patch_hu(source, center_xyz, spec)
    return np.asarray((hu - low) / (high - low), dtype=np.float32)


def patch_slice_range(
    geometry: Geometry, center_xyz: tuple[float, float, float], spec: PatchSpec
) -> tuple[int, int]:
    """``[start, stop)`` of the volume's slices a patch around ``center_xyz`` spans (unclipped).

    The patch's z extent (``patch_shape_zyx[0] * spacing_mm``) in the volume's slice steps,
    rounded out to whole slices: the slices a report cites as evidence.
    """
    half_mm = spec.patch_shape_zyx[0] * spec.spacing_mm / 2.0
    center_z = round(float(geometry.world_to_index_zyx(np.asarray(center_xyz))[0]))
    reach = int(np.ceil(half_mm / geometry.spacing_xyz[2]))
    return center_z - reach, center_z + reach + 1
