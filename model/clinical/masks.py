"""Nodule masks a user sends (NIfTI, MetaImage ``.mha``, DICOM SEG), put on the CT's voxel grid.

A mask may come on its own grid (another spacing, a crop, a SEG of a few frames): it is taken
to the CT's grid by nearest-neighbour lookup in world coordinates (``model.ct.geometry``), only in
the box of the CT that the mask's nonzero voxels span. Any nonzero voxel is inside the nodule;
a SEG's segments are merged. Sizes are checked on the header before any voxel is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.errors import InvalidDicomError

from model.clinical.measure import BoolArray, NoduleRegion, measure
from model.ct.geometry import Geometry, GeometryError
from model.ct.itk import MAX_VOXELS, load_itk_volume
from model.ct.volume import VolumeReadError, VolumeSource, check_read_budget

IMAGE_MASK_SUFFIXES = (".nii", ".nii.gz", ".mha")
SEG_SUFFIXES = (".dcm",)
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
#: Peak bytes per voxel of decoding a SEG: the frames as uint8, highdicom's volume, the mask.
SEG_BYTES_PER_VOXEL = 3


#: The largest extent (mm) a mask may have: beyond it, no nodule (30 mm is a mass already).
MAX_MASK_MM = 60.0


@dataclass(frozen=True)
class Mask:
    """A binary mask on its own grid (``geometry``: where its voxels lie, LPS mm)."""

    mask_zyx: BoolArray
    geometry: Geometry
    frame_of_reference_uid: str | None = None
    """A SEG's frame of reference (None: the file does not say)."""
    patient_id: str | None = None
    """A SEG's patient (None: the file does not say)."""


def read_mask(path: Path, kind: str, max_read_bytes: int | None = None) -> Mask:
    """The mask in a file of ``kind`` (``image`` or ``seg``: the service tells them by suffix).

    Raises:
        VolumeReadError: the file is unusable (a 422 that says why).
    """
    if kind == "image":
        volume = load_itk_volume(path, max_read_bytes)
        return Mask(volume.hu_zyx != 0, volume.geometry)
    return _read_seg(path, max_read_bytes)


def _read_seg(path: Path, max_read_bytes: int | None) -> Mask:
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError, ValueError):
        raise VolumeReadError("the mask is not a readable DICOM file") from None
    if str(header.get("SOPClassUID", "")) != SEGMENTATION_STORAGE:
        raise VolumeReadError("the DICOM mask is not a Segmentation (SEG) object")
    frames = int(header.get("NumberOfFrames", 1) or 1)
    shape = (frames, int(header.get("Rows", 0)), int(header.get("Columns", 0)))
    if min(shape) < 1 or int(np.prod(shape)) > MAX_VOXELS:
        raise VolumeReadError(f"the SEG's frames {list(shape)} are outside the accepted range")
    check_read_budget(shape, SEG_BYTES_PER_VOXEL, max_read_bytes, "the SEG")
    try:
        volume = hd.seg.segread(path).get_volume(combine_segments=True, skip_overlap_checks=True)
    except (ValueError, RuntimeError, AttributeError, KeyError) as e:
        # highdicom refuses frames that do not stack into one regular volume, among others.
        raise VolumeReadError(f"the SEG cannot be read as one volume ({e})") from None
    array = np.asarray(volume.array)
    if array.ndim != 3:
        raise VolumeReadError(f"the SEG's volume has {array.ndim} axes, a mask needs 3")
    return Mask(
        array != 0,
        _geometry_of_affine(np.asarray(volume.affine), array.shape),
        str(header.get("FrameOfReferenceUID", "")) or None,
        str(header.get("PatientID", "")) or None,
    )


def _geometry_of_affine(affine: npt.NDArray[np.float64], shape: tuple[int, ...]) -> Geometry:
    """The grid of an array whose index (a0, a1, a2) lies at ``affine @ (a0, a1, a2, 1)`` (LPS).

    highdicom's affine maps array axes in order; ours puts the last array axis first (x).
    """
    columns = [affine[:3, axis] for axis in (2, 1, 0)]  # world steps of the x, y, z axes
    spacing = [float(np.linalg.norm(c)) for c in columns]
    try:
        direction = np.stack([c / s for c, s in zip(columns, spacing, strict=True)], axis=1)
        return Geometry.from_itk(affine[:3, 3], spacing, direction.reshape(-1), shape[::-1])
    except (GeometryError, ZeroDivisionError, FloatingPointError):
        raise VolumeReadError("the SEG's frames do not lie on a regular grid") from None


def _target_box(
    mask: Mask, target: Geometry
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``[start, stop)`` of the target's voxels the mask's nonzero voxels can reach (clipped)."""
    found = np.argwhere(mask.mask_zyx)
    if found.size == 0:
        raise VolumeReadError("the mask is empty (no nonzero voxel)")
    low, high = found.min(axis=0) - 0.5, found.max(axis=0) + 0.5
    corners = np.array([[c[0], c[1], c[2]] for c in np.ndindex(2, 2, 2)], dtype=np.float64)
    corners_zyx = low + corners * (high - low)
    world = mask.geometry.index_zyx_to_world(corners_zyx)
    reach = target.world_to_index_zyx(world)
    start = np.clip(np.floor(reach.min(axis=0)).astype(np.int64), 0, None)
    stop = np.minimum(np.ceil(reach.max(axis=0)).astype(np.int64) + 1, target.shape_zyx)
    if np.any(stop <= start):
        raise VolumeReadError("the mask lies outside the CT volume")
    return start, stop


def resample_to(mask: Mask, target: Geometry) -> tuple[BoolArray, tuple[int, int, int]]:
    """The mask on the target's grid, in the box it covers: (box mask, box start index zyx)."""
    start, stop = _target_box(mask, target)
    grid = np.stack(
        np.meshgrid(*(np.arange(a, b) for a, b in zip(start, stop, strict=True)), indexing="ij"),
        axis=-1,
    ).reshape(-1, 3)
    source_index = np.rint(mask.geometry.world_to_index_zyx(target.index_zyx_to_world(grid)))
    shape = np.asarray(mask.mask_zyx.shape)
    inside = np.all((source_index >= 0) & (source_index < shape), axis=1)
    values = np.zeros(len(grid), dtype=bool)
    picked = source_index[inside].astype(np.int64)
    values[inside] = mask.mask_zyx[picked[:, 0], picked[:, 1], picked[:, 2]]
    box = values.reshape(tuple(int(n) for n in stop - start))
    if not box.any():
        raise VolumeReadError("the mask holds no voxel inside the CT volume")
    return box, (int(start[0]), int(start[1]), int(start[2]))


def check_same_study(mask: Mask, source: VolumeSource) -> None:
    """A SEG must be of the CT's frame of reference, and of its patient where both say.

    Only a DICOM CT (one with slice headers) can say; an image file's is taken as it is.

    Raises:
        VolumeReadError: another frame of reference or another patient (named, no value).
    """
    headers = getattr(source, "slice_headers", None)
    if headers is None or (mask.frame_of_reference_uid is None and mask.patient_id is None):
        return
    first = headers(0, 1)
    if not first:
        return
    frame = str(first[0].get("FrameOfReferenceUID", "")) or None
    if mask.frame_of_reference_uid and frame and mask.frame_of_reference_uid != frame:
        raise VolumeReadError(
            "the SEG's FrameOfReferenceUID is not the CT series': a mask must be drawn on the "
            "uploaded series"
        )
    patient = str(first[0].get("PatientID", "")) or None
    if mask.patient_id and patient and mask.patient_id != patient:
        raise VolumeReadError("the SEG's PatientID is not the CT series': another patient's mask")


def _check_extent(box: BoolArray, geometry: Geometry) -> None:
    """Refuse a mask wider than any nodule along an axis, before it is measured."""
    found = np.argwhere(box)
    extent_zyx = (found.max(axis=0) - found.min(axis=0) + 1) * np.asarray(
        geometry.spacing_xyz[::-1]
    )
    widest = float(extent_zyx.max())
    if widest > MAX_MASK_MM:
        raise VolumeReadError(
            f"the mask is {widest:.0f} mm across: no nodule is wider than {MAX_MASK_MM:.0f} mm "
            "(send the nodule's mask, not a region or the whole scan)"
        )


def mask_region(source: VolumeSource, mask: Mask) -> NoduleRegion:
    """An uploaded mask on a CT: its box of the CT, measured with the CT's HU there.

    Raises:
        VolumeReadError: another study's SEG, a mask outside the CT, or one wider than a nodule.
    """
    check_same_study(mask, source)
    box, start = resample_to(mask, source.geometry)
    _check_extent(box, source.geometry)
    stop = [s + n for s, n in zip(start, box.shape, strict=True)]
    hu = np.asarray(source.read_box(start, stop), dtype=np.float32)
    box_geometry = source.geometry.with_shape_zyx((box.shape[0], box.shape[1], box.shape[2]), start)
    measured = measure(box, box_geometry, hu)
    if measured.long_axis_mm > MAX_MASK_MM:  # an oblique one the axis-aligned check let by
        raise VolumeReadError(
            f"the mask is {measured.long_axis_mm:.0f} mm across: no nodule is wider than "
            f"{MAX_MASK_MM:.0f} mm (send the nodule's mask, not a region or the whole scan)"
        )
    return NoduleRegion(box, start, box_geometry, measured)


def centroid_xyz(region: NoduleRegion) -> tuple[float, float, float]:
    """The world centre (mm, LPS) of a region's voxels."""
    center = region.geometry.index_zyx_to_world(np.argwhere(region.mask_zyx).mean(axis=0))
    return float(center[0]), float(center[1]), float(center[2])
