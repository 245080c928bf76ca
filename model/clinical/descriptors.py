"""Measured descriptors of a nodule mask: the numbers a radiologist reads off a nodule.

Mean diameter (Lung-RADS: (long + short axial axis) / 2), volume, the mean and the 10th / 90th
percentile HU inside the mask, the solid fraction (of the mask's core, ``model.clinical.measure``)
and the sphericity. The evaluation's *measured descriptors* baseline searches by them (each
z-scored over the catalogue, nearest by Euclidean distance); where no mask is found a nodule
has none (NaN), never a made-up value.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields

import numpy as np
import numpy.typing as npt

from model.clinical.measure import (
    BoolArray,
    MeasureError,
    NoduleRegion,
    grow_at,
    mask_core,
    measure,
    solid_fraction,
    sphericity,
)
from model.ct.geometry import Geometry
from model.ct.volume import VolumeSource


@dataclass(frozen=True)
class MaskDescriptors:
    """What a mask says of its nodule (world mm, HU)."""

    mean_diameter_mm: float
    volume_mm3: float
    mean_hu: float
    p10_hu: float
    p90_hu: float
    solid_fraction: float
    sphericity: float

    def as_row(self) -> tuple[float, ...]:
        """The values in field order (``DESCRIPTOR_NAMES``)."""
        return tuple(float(v) for v in astuple(self))


#: The descriptors' names, in ``MaskDescriptors.as_row`` order.
DESCRIPTOR_NAMES = tuple(f.name for f in fields(MaskDescriptors))


def describe(mask_zyx: BoolArray, geometry: Geometry, hu_zyx: npt.ArrayLike) -> MaskDescriptors:
    """The descriptors of a mask on a grid, with the HU on the same grid.

    Raises:
        MeasureError: an empty mask, or arrays of another shape than the grid's.
    """
    mask = np.asarray(mask_zyx, dtype=bool)
    hu = np.asarray(hu_zyx, dtype=np.float64)
    if hu.shape != mask.shape:
        raise MeasureError(f"HU shape {hu.shape} is not the mask's {mask.shape}")
    size = measure(mask, geometry)
    inside = hu[mask]
    p10, p90 = np.percentile(inside, [10.0, 90.0])
    return MaskDescriptors(
        mean_diameter_mm=size.mean_diameter_mm,
        volume_mm3=size.volume_mm3,
        mean_hu=float(inside.mean()),
        p10_hu=float(p10),
        p90_hu=float(p90),
        solid_fraction=solid_fraction(hu[mask_core(mask)]),
        sphericity=sphericity(mask, geometry),
    )


def describe_region(source: VolumeSource, region: NoduleRegion) -> MaskDescriptors:
    """The descriptors of a nodule region found in ``source`` (its box's HU read once more).

    Raises:
        MeasureError: the region is empty.
    """
    stop = tuple(a + n for a, n in zip(region.start_zyx, region.mask_zyx.shape, strict=True))
    return describe(region.mask_zyx, region.geometry, source.read_box(region.start_zyx, stop))


def describe_grown(
    source: VolumeSource, center_xyz: tuple[float, float, float]
) -> MaskDescriptors | None:
    """The descriptors of the region grown at a world point (``model.clinical.measure.grow_at``).

    None when region growing finds no mask there.

    Raises:
        MeasureError: the point lies outside the volume, or the voxels are too small.
    """
    grown = grow_at(source, center_xyz)
    return describe_region(source, grown) if grown is not None else None
