"""The queried nodule's mask: from the network's mask branch, or by region growing without one.

One function (``find_nodule``) serves the service's ``size_estimate``, its SR and SEG, and the
indexer's measured-descriptors baseline, so both measure the same nodule the same way.

- **The network's mask** (``network_region``): the mask branch's probabilities on the model's
  patch grid around the point (``model.preprocessing``: isotropic, axis-aligned), averaged over
  the 8 flips of the three axes (test-time augmentation, as ``bench/bench_mask_head.py``
  validated it), resampled (trilinear, one affine map composed from the two grids' geometries)
  onto the CT's own voxels in the patch's box, thresholded at
  0.5; the component nearest the point, within ``MASK_CENTER_REACH_MM``, is the nodule. Measured
  on the CT's grid with its HU (``model.clinical.measure.measure``), so the axes are those of the
  CT's own slices and the SEG lies on the series' frames.
- **Region growing** (``model.clinical.measure.grow_at``): for a model without the mask branch,
  where the branch finds nothing at the point, and where the model card's ``mask_policy`` names the
  branch's diameter (and growing finds the nodule). The policy comes from patient-grouped
  cross-validation of the model's recipe (``nodule-index crossval --set-mask-policy``): the
  ranges where region growing's masks overlapped the reference masks better with a diameter no
  worse, on the nodules it answers. For the real recipe (``make real-eval``, 221 LIDC VOIs of
  unseen patients) that is nowhere: on 10-20 mm nodules region growing's Dice is higher but its
  diameter further off (docs/measurement.md), so the card's ranges are empty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from model.clinical.measure import (
    GROW_METHOD,
    MASK_CENTER_REACH_MM,
    MASK_THRESHOLD,
    MAX_GROW_VOXELS,
    NETWORK_METHOD,
    BoolArray,
    EstimatedBy,
    MeasureError,
    NoduleRegion,
    estimated_by,
    grow_at,
    measure,
    patch_geometry,
)
from model.ct.geometry import Geometry
from model.ct.volume import VolumeSource
from model.nn.embedder import Embedder
from model.preprocessing import PatchSpec, extract_patch


@dataclass(frozen=True)
class FoundNodule:
    """The queried nodule's mask on the CT, measured, and how it was found."""

    region: NoduleRegion
    method: str
    """``NETWORK_METHOD`` or ``model.clinical.measure.GROW_METHOD``."""
    branch_region: NoduleRegion | None = None
    """The mask branch's own region when it found one, also where the card's mask policy had
    region growing measure instead (the evaluation scores both)."""

    @property
    def estimated_by(self) -> EstimatedBy:
        """The method in two words (the SR's method code, the SEG's algorithm)."""
        return estimated_by(self.method)


def _patch_box(
    source_shape_zyx: tuple[int, int, int], corners_index_zyx: npt.NDArray[np.float64]
) -> tuple[list[int], list[int]]:
    """``[start, stop)`` (z, y, x) of the CT voxels inside the patch's corners, clipped."""
    shape = np.asarray(source_shape_zyx)
    start = np.clip(np.ceil(corners_index_zyx.min(axis=0) - 1e-6), 0, shape - 1).astype(int)
    stop = np.clip(np.floor(corners_index_zyx.max(axis=0) + 1e-6).astype(int) + 1, start + 1, shape)
    return [int(v) for v in start], [int(v) for v in stop]


def component_at(
    mask_zyx: BoolArray, box: Geometry, center_xyz: npt.NDArray[np.float64]
) -> BoolArray | None:
    """The face-connected component of ``mask`` (on ``box``) nearest the point, within reach."""
    labels, n = ndimage.label(mask_zyx)
    if n == 0:
        return None
    inside = np.argwhere(labels > 0)  # only the mask's voxels get world coordinates
    distance_mm = np.linalg.norm(box.index_zyx_to_world(inside) - center_xyz, axis=1)
    owner = labels[tuple(inside.T)]
    nearest = np.asarray(ndimage.minimum(distance_mm, owner, index=np.arange(1, n + 1)))
    best = int(np.argmin(nearest))
    if float(nearest[best]) > MASK_CENTER_REACH_MM:
        return None
    return np.asarray(labels == best + 1)


def _box_to_patch(
    box: Geometry, patch: Geometry
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``patch_index_zyx = matrix @ box_index_zyx + offset``, both grids' indices (z, y, x).

    Composed from the two geometries' own conversions at four points (both maps are affine).
    """
    probe = np.vstack([np.zeros(3), np.eye(3)])
    at = patch.world_to_index_zyx(box.index_zyx_to_world(probe))
    return (at[1:] - at[0]).T, at[0]


def _check_mask_budget(geometry: Geometry, box_voxels: int) -> None:
    """Refuse voxels so small that the patch's box would not fit the memory budget.

    Raises:
        MeasureError: the box is over ``MAX_GROW_VOXELS`` (the message gives the voxel size).
    """
    if box_voxels <= MAX_GROW_VOXELS:
        return
    smallest = min(float(v) for v in geometry.spacing_xyz)
    raise MeasureError(
        f"the voxels ({smallest:g} mm) are too small to estimate a size from the network's mask "
        "within the memory budget"
    )


def network_region(
    embedder: Embedder,
    source: VolumeSource,
    center_xyz: tuple[float, float, float],
    patch: npt.NDArray[np.float32] | None = None,
) -> NoduleRegion | None:
    """The mask branch's nodule at a world point, on the CT's voxels (module docstring).

    Args:
        embedder: the embedder of a model with the mask branch.
        source: the CT (any ``model.ct.volume.VolumeSource``).
        center_xyz: the point, world mm (LPS).
        patch: the patch ``extract_patch`` cut there with the model's spec, when already cut.

    Returns:
        The region, or None when no voxel of the branch's mask is within reach of the point.

    Raises:
        MeasureError: the point lies outside the volume, or its voxels are too small.
        EmbeddingInputError: the model has no mask branch.
    """
    geometry = source.geometry
    if not geometry.contains_world(center_xyz):
        shown = ", ".join(f"{float(v):g}" for v in center_xyz)
        raise MeasureError(f"the point ({shown}) lies outside the volume")
    spec: PatchSpec = embedder.card.preprocessing
    grid = patch_geometry(center_xyz, spec)
    corners = np.array(
        [[z, y, x] for z in (0, 1) for y in (0, 1) for x in (0, 1)], dtype=np.float64
    ) * (np.asarray(grid.shape_zyx, dtype=np.float64) - 1)
    start, stop = _patch_box(
        geometry.shape_zyx, geometry.world_to_index_zyx(grid.index_zyx_to_world(corners))
    )
    _check_mask_budget(geometry, int(np.prod(np.asarray(stop) - np.asarray(start))))
    if patch is None:
        patch = extract_patch(source, center_xyz, spec)
    probability = embedder.mask_probabilities(patch[None])[0]
    hu = np.asarray(source.read_box(start, stop), dtype=np.float32)
    box = geometry.with_shape_zyx((hu.shape[0], hu.shape[1], hu.shape[2]), start)
    matrix, offset = _box_to_patch(box, grid)
    sampled = ndimage.affine_transform(
        probability, matrix, offset, output_shape=hu.shape, order=1, mode="constant", cval=0.0
    )
    center = np.asarray(center_xyz, dtype=np.float64)
    mask = component_at(sampled >= MASK_THRESHOLD, box, center)
    if mask is None:
        return None
    first = (int(start[0]), int(start[1]), int(start[2]))
    return NoduleRegion(mask, first, box, measure(mask, box, hu))


def find_nodule(
    embedder: Embedder,
    source: VolumeSource,
    center_xyz: tuple[float, float, float],
    patch: npt.NDArray[np.float32] | None = None,
) -> FoundNodule | None:
    """The queried nodule by the better method the model allows (module docstring).

    The mask branch when the model has one and it finds the nodule, else region growing; and
    region growing where the card's ``mask_policy`` names the branch's diameter and growing
    finds the nodule there.

    Raises:
        MeasureError: the point lies outside the volume (or, growing, the voxels are too small).
    """
    if embedder.segments:
        region = network_region(embedder, source, center_xyz, patch)
        if region is not None:
            policy = embedder.card.mask_policy
            if policy.prefers_growing(region.measurement.mean_diameter_mm):
                grown = _grow_or_none(source, center_xyz)
                if grown is not None:
                    return FoundNodule(grown, GROW_METHOD, branch_region=region)
            return FoundNodule(region, NETWORK_METHOD, branch_region=region)
    grown = grow_at(source, center_xyz)
    return FoundNodule(grown, GROW_METHOD) if grown is not None else None


def _grow_or_none(
    source: VolumeSource, center_xyz: tuple[float, float, float]
) -> NoduleRegion | None:
    """Region growing where the policy asks for it; None (keep the branch's) where it cannot."""
    try:
        return grow_at(source, center_xyz)
    except MeasureError:
        return None
