"""PNG views for people: slices through a nodule, a query patch, and axial planes of a scan."""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

from model.ct.volume import VolumeSource
from model.preprocessing import AIR_HU, CoordinateOutsideVolumeError, PatchSpec, patch_hu

logger = logging.getLogger(__name__)

#: Largest side of an axial view, pixels: bounds the work (at most 9 tiles of the patch function)
#: and the bytes (a few hundred kB) of one request.
MAX_VIEW_PX = 768
#: Default axial views have at least this many pixels on their longer side (finer than the
#: scan's voxels when it is small, interpolated by the patch function), so they are not blown up
#: in the browser; native resolution when that is finer (up to ``MAX_VIEW_PX``).
MIN_DEFAULT_VIEW_PX = 512
#: Finest pixel of a view, mm (the API's lower bound for ``pixel_mm``).
MIN_PIXEL_MM = 0.1
#: The patch function's largest side (``PatchSpec``): larger views are drawn as tiles of it.
TILE_PX = 256
#: Bounds of a display window, HU: beyond them no CT value is told apart.
WINDOW_WIDTH_RANGE = (1.0, 5000.0)
WINDOW_LEVEL_RANGE = (-1500.0, 3000.0)


@dataclass(frozen=True)
class DisplayWindow:
    """A grey-scale window: HU ``level - width / 2`` is black, ``level + width / 2`` white."""

    width: float
    level: float

    @property
    def hu_range(self) -> tuple[float, float]:
        """(low, high) HU."""
        return (self.level - self.width / 2.0, self.level + self.width / 2.0)

    def grey(self, hu: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
        """8-bit grey of HU values under this window."""
        low, high = self.hu_range
        grey: npt.NDArray[np.uint8] = np.clip((hu - low) / (high - low) * 255.0, 0, 255).astype(
            np.uint8
        )
        return grey


#: Standard presets (W/L in HU); the viewer offers the same values.
WINDOW_PRESETS = {
    "lung": DisplayWindow(1500.0, -600.0),
    "mediastinum": DisplayWindow(350.0, 50.0),
    "bone": DisplayWindow(1800.0, 400.0),
}
LUNG_WINDOW = WINDOW_PRESETS["lung"]

#: 64 mm square views at 0.5 mm (128 px each).
PREVIEW_SPEC = PatchSpec(
    patch_shape_zyx=(128, 128, 128), spacing_mm=0.5, hu_window=LUNG_WINDOW.hu_range
)


def preview_png(
    source: VolumeSource,
    center_xyz: tuple[float, float, float],
    window: DisplayWindow = LUNG_WINDOW,
) -> bytes:
    """A 3 x 128 px wide strip: axial (looking from the feet), coronal, sagittal; 8-bit grey.

    Uses the one patch function (world-aligned, isotropic), so every scan looks the same way round:
    axial with the patient's right on the left of the image, coronal and sagittal head up.
    """
    spec = PREVIEW_SPEC.model_copy(update={"hu_window": window.hu_range})
    grey = window.grey(patch_hu(source, center_xyz, spec))
    mid = grey.shape[0] // 2
    axial = grey[mid]  # rows: +y (posterior) downwards, columns: +x (patient's left) rightwards
    coronal = grey[::-1, mid, :]  # head up
    sagittal = grey[::-1, :, mid]  # head up, anterior on the left
    return _png(np.concatenate([axial, coronal, sagittal], axis=1))


#: Pixels a side of a zoomed axial view (``zoom_png``).
ZOOM_PX = 256
#: Bounds of a zoomed view's field, mm: a small nodule to a large mass with its surroundings.
ZOOM_FOV_RANGE_MM = (16.0, 160.0)


def zoom_png(
    source: VolumeSource,
    center_xyz: tuple[float, float, float],
    fov_mm: float = 64.0,
    window: DisplayWindow = LUNG_WINDOW,
) -> tuple[bytes, float]:
    """A world-aligned axial view, ``fov_mm`` square, centred on a point; the PNG and its pixel mm.

    The comparison view scrolls two of these in step: each at its own nodule's centre plus the
    same z offset. Same orientation as ``axial_view_png`` (the patient's left to the right).

    Raises:
        CoordinateOutsideVolumeError: the point is outside the scan.
    """
    pixel = fov_mm / ZOOM_PX
    spec = PatchSpec(
        patch_shape_zyx=(1, ZOOM_PX, ZOOM_PX), spacing_mm=pixel, hu_window=window.hu_range
    )
    return _png(window.grey(patch_hu(source, center_xyz, spec)[0])), pixel


def _png(grey: npt.NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(grey, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def patch_preview_png(patch: npt.NDArray[np.float32], scale: int = 4) -> bytes:
    """The model's own patch (values in [0, 1], z y x) as axial, coronal, sagittal, enlarged.

    Same orientation as ``preview_png``: the patch grid is world-aligned.
    """
    grey = (np.clip(patch, 0.0, 1.0) * 255.0).astype(np.uint8)
    d, h, w = grey.shape
    views = [grey[d // 2], grey[::-1, h // 2, :], grey[::-1, :, w // 2]]
    height = max(v.shape[0] for v in views)
    padded = [np.pad(v, ((0, height - v.shape[0]), (0, 0))) for v in views]
    strip = np.concatenate(padded, axis=1)
    return _png(np.kron(strip, np.ones((scale, scale), dtype=np.uint8)))


def axial_view_png(
    source: VolumeSource,
    z_mm: float,
    pixel_mm: float | None = None,
    window: DisplayWindow = LUNG_WINDOW,
) -> tuple[bytes, float]:
    """A world-aligned axial plane of a scan at height ``z_mm`` over its whole x-y extent.

    Pixel (row r, column c) is the world point (min_x + c * pixel_mm, min_y + r * pixel_mm, z_mm)
    where min_x/min_y are the scan's extent (``Geometry.extent_world_xyz``): columns run to the
    patient's left, rows posterior, as radiologists view axial images. Returns the PNG and the
    pixel size actually used. Default pixel: the scan's finest voxel size, made finer when that
    gives fewer than ``MIN_DEFAULT_VIEW_PX`` on the longer side; always raised so neither side
    exceeds ``MAX_VIEW_PX`` (and never below ``MIN_PIXEL_MM``).

    Raises:
        CoordinateOutsideVolumeError: ``z_mm`` is outside the scan.
    """
    geometry = source.geometry
    low, high = geometry.extent_world_xyz()
    if not (math.isfinite(z_mm) and low[2] - 1e-6 <= z_mm <= high[2] + 1e-6):
        raise CoordinateOutsideVolumeError(
            f"z {z_mm:g} mm is outside the scan (z from {low[2]:.1f} to {high[2]:.1f} mm)"
        )
    span = float(max(high[0] - low[0], high[1] - low[1], 1.0))
    if pixel_mm is None:
        native = float(min(geometry.spacing_xyz))
        pixel_mm = min(native, span / (MIN_DEFAULT_VIEW_PX - 1))
    pixel = max(span / (MAX_VIEW_PX - 1), pixel_mm, MIN_PIXEL_MM)
    # The epsilon keeps an exact fit (span = (n - 1) pixels) from losing its last pixel to rounding.
    width = min(MAX_VIEW_PX, int((high[0] - low[0]) / pixel + 1e-6) + 1)
    height = min(MAX_VIEW_PX, int((high[1] - low[1]) / pixel + 1e-6) + 1)
    z = float(np.clip(z_mm, low[2], high[2]))
    # Outside the scan is air, as the patch function pads it.
    hu = np.full((height, width), max(AIR_HU, window.hu_range[0]), dtype=np.float32)
    # The patch function cuts at most TILE_PX a side: larger planes are tiles of it on the one
    # pixel grid (each tile's centre is its pixels' centre), so seams fall between pixels.
    for r0 in range(0, height, TILE_PX):
        for c0 in range(0, width, TILE_PX):
            h, w = min(TILE_PX, height - r0), min(TILE_PX, width - c0)
            center = (
                float(low[0]) + (c0 + (w - 1) / 2.0) * pixel,
                float(low[1]) + (r0 + (h - 1) / 2.0) * pixel,
                z,
            )
            if not geometry.contains_world(center):
                # Only oblique volumes have bounding-box tiles centred outside the scan: such a
                # tile is drawn as air rather than refused.
                logger.debug("axial tile at %s lies outside the volume", center)
                continue
            spec = PatchSpec(patch_shape_zyx=(1, h, w), spacing_mm=pixel, hu_window=window.hu_range)
            hu[r0 : r0 + h, c0 : c0 + w] = patch_hu(source, center, spec)[0]
    return _png(window.grey(hu)), pixel
