"""Stored values become HU: DICOM modality LUT (slope and intercept) and NIfTI scl_slope/inter."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from indexer.data.synth.dicom_export import write_dicom_series
from model.ct.open import load_volume, open_volume
from model.ct.volume import CTVolume
from tests.helpers.synthetic import FLIP_YZ, make_geometry

SHAPE_ZYX = (5, 6, 7)


def volume() -> CTVolume:
    """FLIP_YZ has det +1, so the DICOM reader keeps the written slice order."""
    geometry = make_geometry(SHAPE_ZYX, (0.6, 0.9, 1.5), (1.0, 2.0, 3.0), FLIP_YZ)
    hu = np.random.default_rng(4).integers(-1024, 2000, SHAPE_ZYX).astype(np.float32)
    return CTVolume(hu_zyx=hu, geometry=geometry)


@pytest.mark.parametrize(("slope", "intercept"), [(1.0, -1024.0), (2.0, -2048.0), (0.5, -1000.0)])
def test_dicom_rescale_slope_and_intercept(tmp_path: Path, slope: float, intercept: float) -> None:
    original = volume()
    paths = write_dicom_series(original, tmp_path, series_uid="1.2.826.0.1.3680043.10.7")
    stored = []
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{intercept:g}"
        ds.save_as(path)
        stored.append(ds.pixel_array.astype(np.float64))
    expected = np.stack(stored) * slope + intercept
    loaded = load_volume(tmp_path)
    np.testing.assert_array_equal(loaded.hu_zyx, expected)
    box = open_volume(tmp_path).read_box((1, 2, 3), (4, 5, 6))
    np.testing.assert_array_equal(box, expected[1:4, 2:5, 3:6])


def test_dicom_signed_pixels(tmp_path: Path) -> None:
    """PixelRepresentation 1 (int16) with intercept 0, as some scanners store HU directly."""
    original = volume()
    paths = write_dicom_series(original, tmp_path, series_uid="1.2.826.0.1.3680043.10.8")
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = "0"
        ds.PixelData = original.hu_zyx[k].astype("<i2").tobytes()
        ds.save_as(path)
    np.testing.assert_array_equal(load_volume(tmp_path).hu_zyx, original.hu_zyx)


@pytest.mark.parametrize(("slope", "intercept"), [(1.0, -1024.0), (2.0, -1000.0)])
def test_nifti_scaling_is_applied(tmp_path: Path, slope: float, intercept: float) -> None:
    """NIfTI scl_slope/scl_inter (dcm2niix writes -1024 for unsigned CT) make stored values HU."""
    stored = np.random.default_rng(5).integers(0, 3000, SHAPE_ZYX).astype(np.uint16)
    path = tmp_path / "ct.nii"
    sitk.WriteImage(sitk.GetImageFromArray(stored), str(path))
    header = bytearray(path.read_bytes())
    # NIfTI-1 header: scl_slope and scl_inter are float32 at bytes 112 and 116.
    header[112:120] = struct.pack("<ff", slope, intercept)
    path.write_bytes(bytes(header))
    loaded = load_volume(path)
    np.testing.assert_allclose(loaded.hu_zyx, stored * slope + intercept, atol=1e-3)
