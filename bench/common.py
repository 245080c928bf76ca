"""What every benchmark records beside its numbers: the machine and the date."""

from __future__ import annotations

import datetime as dt
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from model.preprocessing import PatchSpec


def cpu_model() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def now_utc() -> str:
    """The date and time of the run (UTC, ISO 8601)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def write_results(path: Path, record: dict[str, Any]) -> None:
    """Write a results file (JSON) under ``bench/results``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def whole_volume_patch(
    path: Path, center_xyz: tuple[float, float, float], spec: PatchSpec
) -> npt.NDArray[np.float32]:
    """The usual path, as a baseline: read the whole volume, resample all of it to the spec's
    spacing, crop around the centre (air outside), window and scale."""
    image = sitk.ReadImage(str(path))
    s = spec.spacing_mm
    size = [round(n * sp / s) for n, sp in zip(image.GetSize(), image.GetSpacing(), strict=True)]
    resampled = sitk.Resample(
        image,
        size,
        sitk.Transform(),
        sitk.sitkLinear,
        image.GetOrigin(),
        (s, s, s),
        image.GetDirection(),
        -1000.0,
        sitk.sitkFloat32,
    )
    array = sitk.GetArrayFromImage(resampled)
    ix, iy, iz = resampled.TransformPhysicalPointToIndex(center_xyz)
    d, h, w = spec.patch_shape_zyx
    crop = np.full((d, h, w), -1000.0, np.float32)
    z0, y0, x0 = iz - d // 2, iy - h // 2, ix - w // 2
    src = array[max(z0, 0) : z0 + d, max(y0, 0) : y0 + h, max(x0, 0) : x0 + w]
    crop[: src.shape[0], : src.shape[1], : src.shape[2]] = src
    low, high = spec.hu_window
    return np.asarray((np.clip(crop, low, high) - low) / (high - low), dtype=np.float32)
