"""MetaImage headers with keys the reader does not use: skipped, as ITK's MetaIO skips them.

SimpleITK copies NIfTI header fields (``dim[0]``, ``qform_code``, ...) and DICOM tags
(``0008|0060``, private ones included) into the MetaImage headers it writes. Such files must open
with the same geometry and voxels as their source, through both the whole-volume and the region
reader. What must still be refused is in ``test_bad_files.py``.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from indexer.data.synth.dicom_export import write_dicom_series
from model.ct.geometry import Geometry
from model.ct.itk import MetaImageRegionSource
from model.ct.open import load_volume, open_volume
from model.ct.volume import CTVolume, F32Array, VolumeSource
from tests.helpers.data import RealSeries
from tests.helpers.readers import READERS, Reader, header, raw_bytes, small_volume
from tests.helpers.synthetic import (
    IDENTITY,
    OBLIQUE,
    make_geometry,
    metaimage_header,
    metaimage_via_dicom,
    metaimage_via_nifti,
    to_sitk,
)

SHAPE_ZYX = (6, 8, 10)
COMMENTS = "POST CONTRAST\r\nArterial phase: 35 s\r\nsecond reader"


def oblique_volume() -> CTVolume:
    geometry = make_geometry(SHAPE_ZYX, (0.7, 0.8, 2.0), (-10.0, 20.0, -30.0), OBLIQUE)
    hu = np.random.default_rng(4).integers(-1000, 1000, SHAPE_ZYX).astype(np.float32)
    return CTVolume(hu_zyx=hu, geometry=geometry)


def all_voxels(source: VolumeSource) -> F32Array:
    if isinstance(source, CTVolume):
        return source.hu_zyx
    return source.read_box((0, 0, 0), source.geometry.shape_zyx)


def assert_same_geometry(got: Geometry, expected: Geometry, atol: float = 1e-9) -> None:
    assert got.shape_zyx == expected.shape_zyx
    np.testing.assert_allclose(got.origin_xyz, expected.origin_xyz, atol=atol)
    np.testing.assert_allclose(got.spacing_xyz, expected.spacing_xyz, atol=atol)
    np.testing.assert_allclose(got.direction, expected.direction, atol=atol)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "compressed"])
@pytest.mark.parametrize("suffix", [".mha", ".mhd"])
@pytest.mark.parametrize("reader", READERS)
def test_metaimage_written_from_nifti(
    tmp_path: Path, reader: Reader, suffix: str, compress: bool
) -> None:
    volume = oblique_volume()
    path = metaimage_via_nifti(to_sitk(volume), tmp_path / f"ct{suffix}", compress=compress)
    text = metaimage_header(path)
    # Guard: the header really holds the NIfTI keys this is about.
    for key in ("dim[0] = 3", "pixdim[1]", "qform_code_name", "ITK_original_direction"):
        assert key in text
    source = reader(path)
    # The same as reading the NIfTI it came from (float32 geometry there), and close to the
    # volume first written.
    nifti = load_volume(tmp_path / "ct-source.nii.gz")
    assert_same_geometry(source.geometry, nifti.geometry)
    assert_same_geometry(source.geometry, volume.geometry, atol=1e-5)
    np.testing.assert_array_equal(all_voxels(source), volume.hu_zyx)
    if reader is open_volume and not compress:
        assert isinstance(source, MetaImageRegionSource)  # the header is read by us, not ITK


def dicom_series(folder: Path) -> CTVolume:
    """A 6-slice series whose slices carry a multi-line ImageComments and a private tag."""
    geometry = make_geometry(SHAPE_ZYX, (0.7, 0.8, 2.0), (-10.0, 20.0, -30.0), IDENTITY)
    hu = np.random.default_rng(5).integers(-1000, 1000, SHAPE_ZYX).astype(np.float32)
    volume = CTVolume(hu_zyx=hu, geometry=geometry)
    for path in write_dicom_series(volume, folder, series_uid="1.2.826.0.1.3680043.10.200"):
        ds = pydicom.dcmread(path)
        ds.ImageComments = COMMENTS
        ds.private_block(0x0009, "NODULE SEARCH TEST", create=True).add_new(0x10, "LO", "x")
        ds.save_as(path)
    return volume


@pytest.mark.parametrize("reader", READERS)
def test_metaimage_written_from_dicom_series(tmp_path: Path, reader: Reader) -> None:
    volume = dicom_series(tmp_path / "series")
    path, image = metaimage_via_dicom(tmp_path / "series", tmp_path / "ct.mha")
    text = metaimage_header(path)
    # Guard: public and private tags, and the comment's line breaks written as they are.
    for key in ("0008|0060 = CT", "0020|000e = 1.2.826.0.1.3680043.10.200", "0009|1010 = x"):
        assert key in text
    assert "\nArterial phase: 35 s\r\n" in text
    source = reader(path)
    assert_same_geometry(
        source.geometry,
        Geometry.from_itk(
            image.GetOrigin(), image.GetSpacing(), image.GetDirection(), image.GetSize()
        ),
    )
    assert_same_geometry(source.geometry, load_volume(tmp_path / "series").geometry, atol=1e-6)
    np.testing.assert_array_equal(all_voxels(source), volume.hu_zyx)


BASE = header().split("ElementType")[0]


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(
            b"dim[0] = 3\npixdim[1] = 0.7\nITK_InputFilterName = NiftiImageIO\n", id="nifti"
        ),
        pytest.param(
            b"0008|0060 = CT\n0010|0010 = M\xfcller^Hans\n0010|1000 = \xc3\xa9\n", id="dicom"
        ),
        pytest.param(b"Made By = hand, 2024\n", id="key-with-blanks"),
        pytest.param(b"ITK_FileNotes =\n", id="empty-value"),
        pytest.param(b"Comment: made by hand = yes\n", id="colon-key"),
        pytest.param(
            b"0020|4000 = POST CONTRAST\nArterial phase: 35 s\nsecond \xe9 line\n0020|4001 = x\n",
            id="multi-line-value",
        ),
    ],
)
@pytest.mark.parametrize("reader", READERS)
def test_hand_written_keys_are_skipped(tmp_path: Path, reader: Reader, extra: bytes) -> None:
    text = BASE.encode() + extra + b"ElementType = MET_SHORT\nElementDataFile = ct.raw\n"
    (tmp_path / "ct.mhd").write_bytes(text)
    (tmp_path / "ct.raw").write_bytes(raw_bytes())
    np.testing.assert_array_equal(all_voxels(reader(tmp_path / "ct.mhd")), small_volume().hu_zyx)


@pytest.mark.parametrize("reader", READERS)
def test_windows_line_endings(tmp_path: Path, reader: Reader) -> None:
    text = header(extra="dim[0] = 3\n").replace("\n", "\r\n")
    (tmp_path / "ct.mhd").write_bytes(text.encode())
    (tmp_path / "ct.raw").write_bytes(raw_bytes())
    np.testing.assert_array_equal(all_voxels(reader(tmp_path / "ct.mhd")), small_volume().hu_zyx)


def itk_voxels(path: Path) -> F32Array:
    return np.asarray(sitk.GetArrayFromImage(sitk.ReadImage(str(path))), dtype=np.float32)


@pytest.mark.parametrize(
    ("keys", "data"),
    [
        pytest.param("BinaryDataByteOrderMSB = 1\n", ">i2", id="msb-1"),
        pytest.param("BinaryDataByteOrderMSB = T\n", ">i2", id="msb-T"),
        pytest.param(
            "BinaryDataByteOrderMSB = True\nElementByteOrderMSB = False\n", ">i2", id="msb-both"
        ),
        pytest.param(
            "ElementByteOrderMSB = True\nBinaryDataByteOrderMSB = False\n", "<i2", id="lsb-both"
        ),
        pytest.param("CompressedData = 1\n", "zlib", id="compressed-1"),
    ],
)
@pytest.mark.parametrize("reader", READERS)
def test_flags_are_read_as_itk_reads_them(
    tmp_path: Path, reader: Reader, keys: str, data: str
) -> None:
    """MetaIO takes a value starting with T, t or 1 as true; both our readers agree with it."""
    hu = small_volume().hu_zyx
    raw = zlib.compress(hu.astype("<i2").tobytes()) if data == "zlib" else hu.astype(data).tobytes()
    path = tmp_path / "ct.mhd"
    path.write_text(header(extra=keys).replace("BinaryDataByteOrderMSB = False\n", "", 1))
    (tmp_path / "ct.raw").write_bytes(raw)
    np.testing.assert_array_equal(itk_voxels(path), hu)  # guard: what SimpleITK reads
    np.testing.assert_array_equal(all_voxels(reader(path)), hu)


@pytest.mark.parametrize("spelling", ["LOCAL", "Local", "local"])
@pytest.mark.parametrize("reader", READERS)
def test_local_data_spellings(tmp_path: Path, reader: Reader, spelling: str) -> None:
    path = tmp_path / "ct.mha"
    path.write_bytes(header(data_file=spelling).encode() + raw_bytes())
    np.testing.assert_array_equal(itk_voxels(path), small_volume().hu_zyx)
    np.testing.assert_array_equal(all_voxels(reader(path)), small_volume().hu_zyx)


@pytest.mark.shared_data
@pytest.mark.slow  # real CT: make test, not make test-fast
def test_real_dicom_series_as_metaimage(real_series: RealSeries, tmp_path: Path) -> None:
    """A real scanner's series (Siemens, with private tags and a multi-line ImageComments)."""
    path, image = metaimage_via_dicom(real_series["CPTAC"], tmp_path / "cptac.mha")
    text = metaimage_header(path)
    assert "0008|0070 = SIEMENS" in text  # guard: public tags
    assert "0009|0010 = SIEMENS CT VA1 DUMMY" in text  # guard: a private creator
    assert "0020|4000 = \nPOST CONTRAST\n" in text  # guard: a value with a line break
    expected = sitk.GetArrayFromImage(image)
    source = open_volume(path)
    assert isinstance(source, MetaImageRegionSource)
    assert_same_geometry(source.geometry, load_volume(real_series["CPTAC"]).geometry, atol=1e-6)
    box = source.read_box((40, 200, 150), (48, 264, 230))
    np.testing.assert_array_equal(box, expected[40:48, 200:264, 150:230])
    np.testing.assert_array_equal(load_volume(path).hu_zyx, expected)
