"""The queried nodule's mask: from the network's mask branch, or by region growing without one.

One function (``find_nodule``) serves the service's ``size_estimate``, its SR and SEG, and the
indexer's measured-descriptors baseline, so both measure the same nodule the same way.

- **The network's mask** (``network_region``): the mask branch's probabilities on the model's
  patch grid around the point (``model.preprocessing``: isotropic, axis-aligned), averaged over
  the 8 flips of the three axes (test-time augmentation, as ``bench/bench_mask_head.py``
  validated it), resampled (trilinear) onto the CT's own voxels in the patch's box, thresholded at
  0.5; the component nearest the point, within ``MASK_CENTER_REACH_MM``, is the nodule. Measured
  on the CT's grid with its HU (``model.measure.measure``), so the axes are those of the CT's own
  slices and the SEG lies on the series' frames.
- **Region growing** (``model.measure.grow_at``): only for a model without the mask branch, or
  where the branch finds nothing at the point. On 374 LIDC VOIs (patient-grouped folds,
  ``bench/results/mask_head_lidc_vois.json``) it measured better nowhere: the branch gives a mask
  for every nodule (region growing 69%), diameter r 0.97 vs 0.60 against the readers' diameter,
  and a higher median Dice in every size and texture group but solid 10-20 mm nodules, where the
  two are level (0.875 vs 0.879).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from model.embedder import Embedder
from model.measure import (
    GROW_METHOD,
    MASK_CENTER_REACH_MM,
    MASK_THRESHOLD,
    NETWORK_METHOD,
    BoolArray,
    MeasureError,
    NoduleRegion,
    grow_at,
    measure,
)
from model.preprocessing import PatchSpec, extract_patch
from model.volume import VolumeSource


@dataclass(frozen=True)
class FoundNodule:
    """The queried nodule's mask on the CT, measured, and how it was found."""

    region: NoduleRegion
    method: str
    """``NETWORK_METHOD`` or ``model.measure.GROW_METHOD``."""


def _patch_box(
    source_shape_zyx: tuple[int, int, int], corners_index_zyx: npt.NDArray[np.float64]
) -> tuple[list[int], list[int]]:
    """``[start, stop)`` (z, y, x) of the CT voxels inside the patch's corners, clipped."""
    shape = np.asarray(source_shape_zyx)
    start = np.clip(np.ceil(corners_index_zyx.min(axis=0) - 1e-6), 0, shape - 1).astype(int)
    stop = np.clip(np.floor(corners_index_zyx.max(axis=0) + 1e-6).astype(int) + 1, start + 1, shape)
    return [int(v) for v in start], [int(v) for v in stop]


def _component_at(
    mask_zyx: BoolArray, world_xyz: npt.NDArray[np.float64], center_xyz: npt.NDArray[np.float64]
) -> BoolArray | None:
    """The face-connected component of ``mask`` nearest the point, if within the reach."""
    labels, n = ndimage.label(mask_zyx)
    if n == 0:
        return None
    distance_mm = np.linalg.norm(world_xyz - center_xyz, axis=-1)
    nearest = np.asarray(ndimage.minimum(distance_mm, labels, index=np.arange(1, n + 1)))
    best = int(np.argmin(nearest))
    if float(nearest[best]) > MASK_CENTER_REACH_MM:
        return None
    return np.asarray(labels == best + 1)


def network_region(
    embedder: Embedder,
    source: VolumeSource,
    center_xyz: tuple[float, float, float],
    patch: npt.NDArray[np.float32] | None = None,
) -> NoduleRegion | None:
    """The mask branch's nodule at a world point, on the CT's voxels (module docstring).

    Args:
        embedder: the embedder of a model with the mask branch.
        source: the CT (any ``model.volume.VolumeSource``).
        center_xyz: the point, world mm (LPS).
        patch: the patch ``extract_patch`` cut there with the model's spec, when already cut.

    Returns:
        The region, or None when no voxel of the branch's mask is within reach of the point.

    Raises:
        MeasureError: the point lies outside the volume.
        EmbeddingInputError: the model has no mask branch.
    """
    geometry = source.geometry
    if not geometry.contains_world(center_xyz):
        shown = ", ".join(f"{float(v):g}" for v in center_xyz)
        raise MeasureError(f"the point ({shown}) lies outside the volume")
    spec: PatchSpec = embedder.card.preprocessing
    if patch is None:
        patch = extract_patch(source, center_xyz, spec)
    probability = embedder.mask_probabilities(patch[None])[0]
    center = np.asarray(center_xyz, dtype=np.float64)
    d, h, w = spec.patch_shape_zyx
    half_xyz = np.array([w - 1, h - 1, d - 1], dtype=np.float64) / 2.0 * spec.spacing_mm
    corners = np.array(
        [[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64
    )
    start, stop = _patch_box(
        geometry.shape_zyx, geometry.world_to_index_zyx(center + corners * half_xyz)
    )
    hu = np.asarray(source.read_box(start, stop), dtype=np.float32)
    box = geometry.with_shape_zyx((hu.shape[0], hu.shape[1], hu.shape[2]), start)
    world_xyz = box.index_zyx_to_world(np.indices(hu.shape).reshape(3, -1).T)
    # Patch voxel (k, j, i) lies at origin + (i, j, k) x spacing (axis-aligned, +x +y +z).
    patch_index_xyz = (world_xyz - (center - half_xyz)) / spec.spacing_mm
    sampled = ndimage.map_coordinates(
        probability, patch_index_xyz[:, ::-1].T, order=1, mode="constant", cval=0.0
    ).reshape(hu.shape)
    mask = _component_at(sampled >= MASK_THRESHOLD, world_xyz.reshape((*hu.shape, 3)), center)
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

    The mask branch when the model has one and it finds the nodule, else region growing.

    Raises:
        MeasureError: the point lies outside the volume (or, growing, the voxels are too small).
    """
    if embedder.segments:
        region = network_region(embedder, source, center_xyz, patch)
        if region is not None:
            return FoundNodule(region, NETWORK_METHOD)
    grown = grow_at(source, center_xyz)
    return FoundNodule(grown, GROW_METHOD) if grown is not None else None
