"""Axial, coronal and sagittal slices through a nodule as one PNG."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from model.preprocessing import PatchSpec, patch_hu
from model.volume import VolumeSource

#: 64 mm square views at 0.5 mm, lung window.
PREVIEW_SPEC = PatchSpec(
    patch_shape_zyx=(128, 128, 128), spacing_mm=0.5, hu_window=(-1350.0, 150.0)
)


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
    strip = np.concatenate([axial, coronal, sagittal], axis=1)
    buffer = io.BytesIO()
    Image.fromarray(strip, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()
