"""A real nodule's 3-D shape from its readers' outlines, as a signed distance field in mm.

Each reader's slice outlines are filled on the grid of the scan they were drawn on (native pixel
spacing and slice spacing; LIDC boundary pixels belong to the nodule, exclusions cut holes). The
consensus is the voxels at least half of the readers include (LIDC's usual 50% level, pylidc's
``consensus`` default); where readers overlap too little for that, their union. The field is the
signed Euclidean distance to the consensus surface in mm (positive inside), so the phantom can
sample it at any world point of a scan with other spacing — trilinear between the source grid's
voxel centres, which interpolates the surface between the readers' slices — and give it an edge
of any softness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw
from scipy import ndimage

from indexer.data.synth.profiles import NoduleShape, ReaderOutline

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

#: Share of readers who must include a voxel (LIDC's 50% consensus).
CONSENSUS_LEVEL = 0.5
#: Empty voxels around the outlines, so the field outside the nodule is well defined.
_PAD = 3
#: Field value (mm) beyond the grid: far outside the nodule.
_OUTSIDE_MM = -50.0


@dataclass(frozen=True)
class ShapeField:
    """Signed distance (mm, > 0 inside) to a nodule's surface on a regular grid.

    Attributes:
        sdf_zyx: the field, shape (nz, ny, nx).
        origin_zyx_mm: offset (z, y, x) from the nodule centre of voxel (0, 0, 0), mm.
        spacing_zyx_mm: voxel size (z, y, x), mm.
    """

    sdf_zyx: F32
    origin_zyx_mm: tuple[float, float, float]
    spacing_zyx_mm: tuple[float, float, float]

    @property
    def depth_mm(self) -> float:
        """Largest distance from the surface inside the nodule."""
        return float(self.sdf_zyx.max())

    @property
    def reach_mm(self) -> float:
        """Half the side of a cube around the centre that holds the whole grid."""
        origin = np.abs(np.asarray(self.origin_zyx_mm))
        far = np.abs(
            np.asarray(self.origin_zyx_mm)
            + (np.asarray(self.sdf_zyx.shape) - 1) * np.asarray(self.spacing_zyx_mm)
        )
        return float(np.maximum(origin, far).max())

    def volume_mm3(self) -> float:
        """Volume of the consensus (voxels inside times the voxel volume)."""
        return float((self.sdf_zyx > 0).sum() * np.prod(self.spacing_zyx_mm))

    def sample(self, dz: F64, dy: F64, dx: F64) -> F64:
        """The field at offsets (mm) from the nodule centre; arrays broadcast together."""
        z, y, x = np.broadcast_arrays(dz, dy, dx)
        coords = np.stack(
            [
                (z - self.origin_zyx_mm[0]) / self.spacing_zyx_mm[0],
                (y - self.origin_zyx_mm[1]) / self.spacing_zyx_mm[1],
                (x - self.origin_zyx_mm[2]) / self.spacing_zyx_mm[2],
            ]
        )
        return np.asarray(
            ndimage.map_coordinates(
                self.sdf_zyx, coords, order=1, mode="constant", cval=_OUTSIDE_MM
            ),
            dtype=np.float64,
        )


def _fill_reader(
    reader: ReaderOutline, grid_shape: tuple[int, int, int], to_index: _GridIndex
) -> npt.NDArray[np.bool_]:
    """One reader's nodule voxels on the grid: inclusions filled, then exclusions cut."""
    mask = np.zeros(grid_shape, dtype=bool)
    nz, ny, nx = grid_shape
    for inclusion in (True, False):
        for outline in reader.slices:
            if outline.inclusion is not inclusion:
                continue
            k = to_index.slice(outline.z_mm)
            if not 0 <= k < nz:
                continue
            image = Image.new("1", (nx, ny), 0)
            points = [to_index.pixel(float(x), float(y)) for x, y in outline.points_xy_mm]
            # The boundary pixels are part of the region (LIDC), so draw the outline as well.
            ImageDraw.Draw(image).polygon(points, fill=1, outline=1)
            filled = np.asarray(image, dtype=bool)
            mask[k] = mask[k] | filled if inclusion else mask[k] & ~filled
    return mask


@dataclass(frozen=True)
class _GridIndex:
    """Maps nodule-relative mm to the indices of the rasterisation grid."""

    x0_mm: float
    y0_mm: float
    z0_mm: float
    pixel_mm: float
    slice_mm: float

    def pixel(self, x_mm: float, y_mm: float) -> tuple[float, float]:
        # Outline points are pixel centres of the source scan, so they land on whole indices.
        return (
            round((x_mm - self.x0_mm) / self.pixel_mm),
            round((y_mm - self.y0_mm) / self.pixel_mm),
        )

    def slice(self, z_mm: float) -> int:
        return round((z_mm - self.z0_mm) / self.slice_mm)


def consensus_field(shape: NoduleShape, level: float = CONSENSUS_LEVEL) -> ShapeField:
    """The signed distance field of the readers' consensus (see the module docstring).

    Raises:
        ValueError: the shape has no outline points.
    """
    clouds = [
        np.column_stack([s.points_xy_mm, np.full(len(s.points_xy_mm), s.z_mm)])
        for r in shape.readers
        for s in r.slices
        if s.inclusion and len(s.points_xy_mm)
    ]
    if not clouds:
        raise ValueError("a nodule shape needs at least one inclusion outline")
    xyz = np.concatenate(clouds)
    px, sz = shape.pixel_spacing_mm, shape.slice_spacing_mm
    low = xyz.min(axis=0)
    high = xyz.max(axis=0)
    index = _GridIndex(
        x0_mm=float(low[0]) - _PAD * px,
        y0_mm=float(low[1]) - _PAD * px,
        z0_mm=float(low[2]) - _PAD * sz,
        pixel_mm=px,
        slice_mm=sz,
    )
    grid_shape = (
        round((high[2] - low[2]) / sz) + 2 * _PAD + 1,
        round((high[1] - low[1]) / px) + 2 * _PAD + 1,
        round((high[0] - low[0]) / px) + 2 * _PAD + 1,
    )
    votes = np.zeros(grid_shape, dtype=np.float32)
    for reader in shape.readers:
        votes += _fill_reader(reader, grid_shape, index)
    share = votes / max(len(shape.readers), 1)
    mask = share >= level - 1e-6
    if not mask.any():
        mask = share > 0
    spacing = (sz, px, px)
    sdf = ndimage.distance_transform_edt(mask, sampling=spacing) - ndimage.distance_transform_edt(
        ~mask, sampling=spacing
    )
    return ShapeField(
        sdf_zyx=np.asarray(sdf, dtype=np.float32),
        origin_zyx_mm=(index.z0_mm, index.y0_mm, index.x0_mm),
        spacing_zyx_mm=spacing,
    )
