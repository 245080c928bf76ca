"""PNG views for people: slices through a nodule, a query patch, and axial planes of a scan."""

from __future__ import annotations

import io
import math

import numpy as np
import numpy.typing as npt
from PIL import Image

from model.preprocessing import CoordinateOutsideVolumeError, PatchSpec, patch_hu
from model.volume import VolumeSource

#: Largest side of an axial view, pixels (bounds the work and the bytes of one request; the
#: patch function's own limit).
MAX_VIEW_PX = 256
#: Lung window for views, HU.
LUNG_WINDOW = (-1350.0, 150.0)

#: 64 mm square views at 0.5 mm, lung window.
PREVIEW_SPEC = PatchSpec(patch_shape_zyx=(128, 128, 128), spacing_mm=0.5, hu_window=LUNG_WINDOW)


def preview_png(source: VolumeSource, center_xyz: tuple[float, float, float]) -> bytes:
    """A 3 x 128 px wide strip: axial (looking from the feet), coronal, sagittal; 8-bit grey.

    Uses the one patch function (world-aligned, isotropic), so every scan looks the same way round:
    axial with the patient's right on the left of the image, coronal and sagittal head up.
    """
    hu = patch_hu(source, center_xyz, PREVIEW_SPEC)
    low, high = PREVIEW_SPEC.hu_window
    grey = np.clip((hu - low) / (high - low) * 255.0, 0, 255).astype(np.uint8)
    mid = grey.shape[0] // 2
    axial = grey[mid]  # rows: +y (posterior) downwards, columns: +x (patient's left) rightwards
    coronal = grey[::-1, mid, :]  # head up
    sagittal = grey[::-1, :, mid]  # head up, anterior on the left
    return _png(np.concatenate([axial, coronal, sagittal], axis=1))


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
    source: VolumeSource, z_mm: float, pixel_mm: float | None = None
) -> tuple[bytes, float]:
    """A world-aligned axial plane of a scan at height ``z_mm`` over its whole x-y extent.

    Pixel (row r, column c) is the world point (min_x + c * pixel_mm, min_y + r * pixel_mm, z_mm)
    where min_x/min_y are the scan's extent (``Geometry.extent_world_xyz``): columns run to the
    patient's left, rows posterior, as radiologists view axial images. Returns the PNG and the
    pixel size actually used (raised so neither side exceeds ``MAX_VIEW_PX``).

    Raises:
        CoordinateOutsideVolumeError: ``z_mm`` is outside the scan.
    """
    low, high = source.geometry.extent_world_xyz()
    if not (math.isfinite(z_mm) and low[2] - 1e-6 <= z_mm <= high[2] + 1e-6):
        raise CoordinateOutsideVolumeError(
            f"z {z_mm:g} mm is outside the scan (z from {low[2]:.1f} to {high[2]:.1f} mm)"
        )
    span = float(max(high[0] - low[0], high[1] - low[1], 1.0))
    size = min(MAX_VIEW_PX, max(16, round(span / pixel_mm) + 1)) if pixel_mm else MAX_VIEW_PX
    pixel = max(span / (size - 1), pixel_mm or 0.0)
    # The epsilon keeps an exact fit (span = (n - 1) pixels) from losing its last pixel to rounding.
    width = min(MAX_VIEW_PX, int((high[0] - low[0]) / pixel + 1e-6) + 1)
    height = min(MAX_VIEW_PX, int((high[1] - low[1]) / pixel + 1e-6) + 1)
    center = (
        float(low[0]) + (width - 1) / 2.0 * pixel,
        float(low[1]) + (height - 1) / 2.0 * pixel,
        float(np.clip(z_mm, low[2], high[2])),
    )
    spec = PatchSpec(patch_shape_zyx=(1, height, width), spacing_mm=pixel, hu_window=LUNG_WINDOW)
    hu = patch_hu(source, center, spec)[0]
    grey = np.clip((hu - LUNG_WINDOW[0]) / (LUNG_WINDOW[1] - LUNG_WINDOW[0]) * 255.0, 0, 255)
    return _png(grey.astype(np.uint8)), pixel
