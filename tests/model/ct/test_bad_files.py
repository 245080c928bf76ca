"""Every unreadable input raises VolumeReadError with a message that says what is wrong."""

from __future__ import annotations

import shutil
import struct
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid

from model.ct.open import load_volume, open_volume
from model.ct.volume import VolumeReadError
from tests.helpers.readers import READERS, SHAPE_ZYX, Reader, header, raw_bytes, small_volume
from tests.helpers.synthetic import write_dicom, write_itk

CT_UID = "1.2.826.0.1.3680043.10.100"
PATIENT_ID = "PATIENT-SECRET-4711"


def dicom_folder(folder: Path, series_uid: str = CT_UID) -> list[Path]:
    """A 6-slice CT series; returns its files in slice (array) order."""
    from indexer.data.synth.dicom_export import write_dicom_series

    return write_dicom_series(small_volume(), folder, series_uid=series_uid, patient_id=PATIENT_ID)


def edit_dicom(path: Path, **values: object) -> None:
    ds = pydicom.dcmread(path)
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.save_as(path)


def read_error(reader: Reader, path: Path, match: str) -> str:
    with pytest.raises(VolumeReadError, match=match) as info:
        reader(path)
    message = str(info.value)
    assert PATIENT_ID not in message
    return message


@contextmanager
def _allocates_at_most(limit_bytes: int) -> Iterator[None]:
    """Refused from the header: Python and numpy allocate at most ``limit_bytes`` meanwhile
    (tracemalloc; a bound on work done, where a wall-clock bound would be flaky)."""
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= limit_bytes, f"allocated {peak / 1024**2:.1f} MB before refusing"


# --- MetaImage ----------------------------------------------------------------------------


def test_hand_written_header_is_readable(tmp_path: Path) -> None:
    """Guard: the hand-written header and raw file used below are valid when left alone."""
    (tmp_path / "ct.mhd").write_text(header())
    (tmp_path / "ct.raw").write_bytes(raw_bytes())
    np.testing.assert_array_equal(load_volume(tmp_path / "ct.mhd").hu_zyx, small_volume().hu_zyx)


@pytest.mark.parametrize("reader", READERS)
def test_truncated_raw(tmp_path: Path, reader: Reader) -> None:
    path = write_itk(small_volume(), tmp_path / "ct.mhd")
    raw = tmp_path / "ct.raw"
    raw.write_bytes(raw.read_bytes()[:-7])
    message = read_error(reader, path, "voxel data is truncated")
    expected = int(np.prod(SHAPE_ZYX)) * 2
    assert f"{expected - 7} bytes, header promises {expected}" in message


@pytest.mark.parametrize("reader", READERS)
def test_truncated_local_mha(tmp_path: Path, reader: Reader) -> None:
    path = write_itk(small_volume(), tmp_path / "ct.mha")
    path.write_bytes(path.read_bytes()[:-100])
    read_error(reader, path, "voxel data is truncated")


@pytest.mark.parametrize("reader", READERS)
def test_truncated_compressed_data(tmp_path: Path, reader: Reader) -> None:
    path = write_itk(small_volume(), tmp_path / "ct.mhd", compress=True)
    zraw = tmp_path / "ct.zraw"
    size = zraw.stat().st_size
    zraw.write_bytes(zraw.read_bytes()[: size // 2])
    # Refused from the header's CompressedDataSize, before zlib sees the stream.
    message = read_error(reader, path, "compressed voxel data is truncated")
    assert f"{size // 2} bytes, CompressedDataSize says {size}" in message
    # Without that key (ITK would then zero-fill), decoding finds the stream cut short.
    text = path.read_text()
    assert "CompressedDataSize" in text
    path.write_text("".join(li for li in text.splitlines(True) if "CompressedDataSize" not in li))
    message = read_error(reader, path, "compressed voxel data is truncated")
    assert f"header promises {int(np.prod(SHAPE_ZYX)) * 2})" in message


@pytest.mark.parametrize("reader", READERS)
def test_garbage_binary_header(tmp_path: Path, reader: Reader) -> None:
    path = tmp_path / "ct.mhd"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    read_error(reader, path, "not a MetaImage header")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("hello world\nthis is not a header\n", id="prose"),
        pytest.param("NDims: 3\nDimSize: 10 8 6\n", id="colon-separated"),
        pytest.param(header().replace("ElementSpacing = 1 1 1", "= 1 1 1"), id="empty-key"),
    ],
)
def test_text_that_is_not_key_value(tmp_path: Path, text: str) -> None:
    path = tmp_path / "ct.mhd"
    path.write_text(text)
    (tmp_path / "ct.raw").write_bytes(raw_bytes())
    read_error(load_volume, path, r"not a MetaImage header \(bad line")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (header().replace("ElementDataFile = ct.raw\n", ""), "no ElementDataFile"),
        (header().replace("DimSize = 10 8 6\n", ""), "no DimSize"),
        (header(dims="10 8"), "DimSize must have 3 values"),
        (header(dims="10 8 six"), "DimSize must be integers"),
        (header(dims="10 0 6"), "DimSize .* outside the accepted range"),
        (header(dims="10 -8 6"), "DimSize .* outside the accepted range"),
        (header().replace("MET_SHORT", "MET_STRING"), "unsupported ElementType"),
        (header().replace("ObjectType = Image", "ObjectType = Mesh"), "not Image"),
        (header(extra="ElementNumberOfChannels = 3\n"), "one channel"),
    ],
)
def test_invalid_header_fields(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "ct.mhd"
    path.write_text(text)
    (tmp_path / "ct.raw").write_bytes(raw_bytes())
    read_error(load_volume, path, match)


@pytest.mark.parametrize("dims", ["100000 100000 100000", "4097 1 1", "4096 4096 4096"])
@pytest.mark.parametrize("reader", READERS)
def test_absurd_dimsize_fails_fast(tmp_path: Path, reader: Reader, dims: str) -> None:
    """Refused from the header alone: nothing of that size is allocated or read."""
    path = tmp_path / "ct.mhd"
    path.write_text(header(dims=dims))
    (tmp_path / "ct.raw").write_bytes(raw_bytes())
    with _allocates_at_most(16 * 1024**2):
        read_error(reader, path, "DimSize .* outside the accepted range")


@pytest.mark.parametrize(
    "data_file", ["../../etc/passwd", "/etc/passwd", "../outside.raw", "sub/../../outside.raw"]
)
@pytest.mark.parametrize("reader", READERS)
def test_data_file_outside_folder(tmp_path: Path, reader: Reader, data_file: str) -> None:
    # The file outside exists and has exactly the right size, so only the path rule stops it.
    (tmp_path / "outside.raw").write_bytes(raw_bytes())
    case = tmp_path / "case"
    (case / "sub").mkdir(parents=True)
    (case / "ct.mhd").write_text(header(data_file=data_file))
    read_error(reader, case / "ct.mhd", "points outside the header's folder")


@pytest.mark.parametrize("reader", READERS)
def test_data_file_symlink_leading_outside(tmp_path: Path, reader: Reader) -> None:
    (tmp_path / "outside.raw").write_bytes(raw_bytes())
    case = tmp_path / "case"
    case.mkdir()
    (case / "ct.raw").symlink_to(tmp_path / "outside.raw")
    (case / "ct.mhd").write_text(header())
    read_error(reader, case / "ct.mhd", "points outside the header's folder")


def test_symlinked_header_cannot_smuggle_a_data_symlink(tmp_path: Path) -> None:
    """SimpleITK reads the data beside the header path as given, not beside its resolved target."""
    (tmp_path / "secret.raw").write_bytes(raw_bytes())
    safe, upload = tmp_path / "safe", tmp_path / "upload"
    safe.mkdir()
    upload.mkdir()
    (safe / "h.mhd").write_text(header())
    (safe / "ct.raw").write_bytes(np.zeros(SHAPE_ZYX, "<i2").tobytes())
    (upload / "ct.mhd").symlink_to(safe / "h.mhd")
    (upload / "ct.raw").symlink_to(tmp_path / "secret.raw")
    # Checking beside the resolved header (safe/ct.raw) would pass and then read secret.raw.
    read_error(load_volume, upload / "ct.mhd", "outside the header's folder")


@pytest.mark.parametrize(
    ("data_file", "match"),
    [
        ("LIST", "multi-file ElementDataFile"),
        ("ct%03d.raw 1 6 1", "multi-file ElementDataFile"),
        ("missing.raw", "not found beside header"),
    ],
)
def test_data_file_list_or_missing(tmp_path: Path, data_file: str, match: str) -> None:
    (tmp_path / "ct.mhd").write_text(header(data_file=data_file))
    read_error(load_volume, tmp_path / "ct.mhd", match)


#: A header without its ElementType and ElementDataFile lines, for the cases below to finish.
HEAD = header().split("ElementType")[0] + "ElementType = MET_SHORT\n"


@pytest.mark.parametrize(
    ("tail", "decoy", "match"),
    [
        pytest.param(
            b"Foo = bar\rElementDataFile = ct.raw\nElementDataFile = ../outside.raw\n",
            None,
            r"binary data in line 9",
            id="carriage-return-inside-a-line",
        ),
        pytest.param(
            b"ElementDataFile\0x = ../outside.raw\nElementDataFile = ct.raw\n",
            None,
            r"binary data in line 9",
            id="nul-in-a-key",
        ),
        pytest.param(
            b"ElementDataFile = LISTING.raw\n" + b"../outside.raw\n" * 6,
            "LISTING.raw",
            "multi-file ElementDataFile 'LISTING.raw'",
            id="list-prefix",
        ),
        pytest.param(
            b"ElementDataFile = LIST 2D\n" + b"../outside.raw\n" * 6,
            "LIST 2D",
            "multi-file ElementDataFile 'LIST 2D'",
            id="list-with-dimension",
        ),
        pytest.param(
            b"Foo = a\nbar\nElementDataFile = ct.raw\nElementDataFile = ../outside.raw\n",
            None,
            "ElementDataFile in line 11 follows a line without '='",
            id="line-without-equals-before-a-data-key",
        ),
        pytest.param(
            b"Foo = a\nElementDataFile\n0008|0020 = ../outside.raw\nElementDataFile = ct.raw\n",
            None,
            r"bad line 'ElementDataFile'",
            id="data-key-without-equals",
        ),
        pytest.param(
            b"Foo = a\nElementDataFile: ../outside.raw\nElementDataFile = ct.raw\n",
            None,
            r"bad line 'ElementDataFile: \.\./outside\.raw'",
            id="data-key-with-colon",
        ),
    ],
)
@pytest.mark.parametrize("reader", READERS)
def test_header_that_itk_reads_differently(
    tmp_path: Path, reader: Reader, tail: bytes, decoy: str | None, match: str
) -> None:
    """Lines that ITK's MetaIO splits, ends or takes otherwise than a naive parser would.

    Each header checks out as reading ``ct.raw`` (or a decoy) beside it, while MetaIO reads the
    file outside the folder; the guard shows SimpleITK alone would read it.
    """
    outside = np.full(SHAPE_ZYX, 1234, "<i2")
    (tmp_path / "outside.raw").write_bytes(outside.tobytes())
    case = tmp_path / "case"
    case.mkdir()
    for name in ("ct.raw", decoy):
        if name:
            (case / name).write_bytes(raw_bytes())
    path = case / "ct.mhd"
    path.write_bytes(HEAD.encode() + tail)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(path))), outside)
    read_error(reader, path, match)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        pytest.param(b"BinaryData = False\n", r"voxels stored as text", id="text-voxels"),
        pytest.param(b"HeaderSize = 0\xa0\n", "HeaderSize is not plain ASCII", id="non-ascii"),
        pytest.param(
            b"CompressedData = True\nCompressedDataSize = 100000000000\n",
            r"compressed voxel data is truncated \(\d+ bytes, CompressedDataSize says 1000",
            id="compressed-size-beyond-the-file",
        ),
        pytest.param(
            b"CompressedData = True\nCompressedDataSize = 10\n",
            r"compressed voxel data is truncated \(decodes to 0 bytes, header promises 960\)",
            id="compressed-size-short",
        ),
        pytest.param(
            b"CompressedData = True\nCompressedDataSize = ten\n",
            "CompressedDataSize must be integers",
            id="compressed-size-not-a-number",
        ),
    ],
)
@pytest.mark.parametrize("reader", READERS)
def test_invalid_data_keys(tmp_path: Path, reader: Reader, extra: bytes, match: str) -> None:
    import zlib

    path = tmp_path / "ct.mhd"
    path.write_bytes(header().encode().replace(b"ElementType", extra + b"ElementType"))
    raw = raw_bytes()
    (tmp_path / "ct.raw").write_bytes(zlib.compress(raw) if b"Compressed" in extra else raw)
    read_error(reader, path, match)


def test_compressed_data_that_is_not_zlib(tmp_path: Path) -> None:
    """ITK decodes garbage to garbage or zeros without an error; the reader refuses it."""
    path = tmp_path / "ct.mhd"
    path.write_text(header(extra="CompressedData = True\n"))
    (tmp_path / "ct.raw").write_bytes(np.random.default_rng(6).bytes(700))
    read_error(load_volume, path, "compressed voxel data is corrupt")


def test_header_of_skipped_keys_only_fails_fast(tmp_path: Path) -> None:
    path = tmp_path / "ct.mhd"
    path.write_bytes(b"ITK_FileNotes = x\n" * 2_000_000)  # 36 MB, no ElementDataFile in 1 MiB
    with _allocates_at_most(16 * 1024**2):  # the first MiB of the header, not the file
        read_error(load_volume, path, "no ElementDataFile in its first 1024 KiB")


def test_nan_voxels(tmp_path: Path) -> None:
    hu = np.zeros(SHAPE_ZYX, dtype=np.float32)
    hu[2, 3, 4] = np.nan
    path = tmp_path / "ct.mhd"
    sitk.WriteImage(sitk.GetImageFromArray(hu), str(path))
    read_error(load_volume, path, "NaN or infinite")
    source = open_volume(path)
    with pytest.raises(VolumeReadError, match="NaN or infinite"):
        source.read_box((0, 0, 0), SHAPE_ZYX)


# --- any ITK format ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mhd", ".mha", ".nii", ".nii.gz"])
@pytest.mark.parametrize(
    "array", [np.zeros((8, 10), np.int16), np.zeros((2, 3, 4, 5), np.int16)], ids=["2d", "4d"]
)
def test_not_three_dimensional(tmp_path: Path, suffix: str, array: npt.NDArray[np.int16]) -> None:
    path = tmp_path / f"img{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=False), str(path))
    message = read_error(load_volume, path, "a CT volume must be 3-D")
    assert str(array.ndim) in message


@pytest.mark.parametrize("suffix", [".mhd", ".nii.gz"])
def test_multichannel_image(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"rgb{suffix}"
    sitk.WriteImage(
        sitk.GetImageFromArray(np.zeros((4, 5, 6, 3), np.int16), isVector=True), str(path)
    )
    read_error(load_volume, path, "one channel")


NOT_NIFTI = r"not a (readable )?NIfTI|not a readable \.nii(\.gz)? image"


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_garbage_nifti(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"ct{suffix}"
    path.write_bytes(np.random.default_rng(1).bytes(5000))
    read_error(load_volume, path, NOT_NIFTI)


def test_gzip_of_garbage_nifti(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "ct.nii.gz"
    path.write_bytes(gzip.compress(np.random.default_rng(2).bytes(5000)))
    read_error(load_volume, path, NOT_NIFTI)


def test_nifti_with_absurd_dimensions_fails_fast(tmp_path: Path) -> None:
    path = write_itk(small_volume(), tmp_path / "ct.nii")
    data = bytearray(path.read_bytes())
    # NIfTI-1: dim[0..7] are int16 at byte 40; dim[1..3] are the x, y, z sizes.
    data[42:48] = struct.pack("<3h", 30000, 30000, 30000)
    path.write_bytes(bytes(data))
    with _allocates_at_most(16 * 1024**2):
        read_error(load_volume, path, "outside the accepted range")


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_truncated_nifti(tmp_path: Path, suffix: str) -> None:
    """ITK's NIfTI reader zero-fills missing voxels; the reader must refuse instead."""
    path = write_itk(small_volume(), tmp_path / f"ct{suffix}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])
    read_error(load_volume, path, "truncated")


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "ct.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    message = read_error(load_volume, path, r"unsupported file type '\.png'")
    assert ".mhd" in message
    assert "DICOM" in message
    read_error(open_volume, path, "unsupported file type")


@pytest.mark.parametrize("reader", READERS)
def test_nonexistent_path(tmp_path: Path, reader: Reader) -> None:
    read_error(reader, tmp_path / "nothing.mhd", "no such file or folder")


# --- DICOM --------------------------------------------------------------------------------------


def test_dicom_guard(tmp_path: Path) -> None:
    """Guard: the series the DICOM tests break is readable when left alone."""
    dicom_folder(tmp_path)
    volume = load_volume(tmp_path)
    assert volume.hu_zyx.shape == SHAPE_ZYX
    assert volume.series_uid == CT_UID


@pytest.mark.parametrize("reader", READERS)
def test_dicom_missing_slice(tmp_path: Path, reader: Reader) -> None:
    paths = dicom_folder(tmp_path)
    paths[3].unlink()
    message = read_error(reader, tmp_path, "gap in the series")
    assert "about 1 missing slice" in message


def test_dicom_two_missing_slices(tmp_path: Path) -> None:
    paths = dicom_folder(tmp_path)
    paths[2].unlink()
    paths[3].unlink()
    read_error(load_volume, tmp_path, "gap in the series: about 2 missing slice")


def test_dicom_irregular_spacing(tmp_path: Path) -> None:
    paths = dicom_folder(tmp_path)
    ds = pydicom.dcmread(paths[3])
    position = [float(v) for v in ds.ImagePositionPatient]
    position[2] -= 0.6  # the slice axis is world -z (FLIP_Z); steps become 1.4 and 2.6 mm
    edit_dicom(paths[3], ImagePositionPatient=[f"{v:.4f}" for v in position])
    read_error(load_volume, tmp_path, "irregular slice spacing")


def test_dicom_duplicate_position(tmp_path: Path) -> None:
    paths = dicom_folder(tmp_path)
    shutil.copy(paths[2], tmp_path / "copy.dcm")
    read_error(load_volume, tmp_path, "duplicate slice position")


def test_dicom_gantry_tilt(tmp_path: Path) -> None:
    paths = dicom_folder(tmp_path)
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        position = [float(v) for v in ds.ImagePositionPatient]
        position[1] += 0.8 * k  # sheared stack: positions drift off the slice normal
        edit_dicom(path, ImagePositionPatient=[f"{v:.4f}" for v in position])
    read_error(load_volume, tmp_path, "not along the normal")


@pytest.mark.parametrize("reader", READERS)
def test_dicom_mixed_orientation(tmp_path: Path, reader: Reader) -> None:
    paths = dicom_folder(tmp_path)
    edit_dicom(paths[2], ImageOrientationPatient=["1", "0", "0", "0", "0", "-1"])
    message = read_error(reader, tmp_path, "mixed orientations")
    assert "1 of 6 slices" in message
    assert paths[2].name in message


@pytest.mark.parametrize("reader", READERS)
def test_dicom_mixed_sizes(tmp_path: Path, reader: Reader) -> None:
    paths = dicom_folder(tmp_path)
    edit_dicom(paths[4], Rows=4, Columns=5, PixelData=np.zeros((4, 5), np.uint16).tobytes())
    message = read_error(reader, tmp_path, "mixed image sizes")
    assert "8x10 x5" in message
    assert "4x5 x1" in message


def test_dicom_mixed_pixel_spacing(tmp_path: Path) -> None:
    paths = dicom_folder(tmp_path)
    edit_dicom(paths[1], PixelSpacing=["0.9", "0.7"])
    read_error(load_volume, tmp_path, "mixed pixel spacings")


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("pixel_mm", ["50.5", "1000"])
def test_dicom_pixel_spacing_no_ct_has(tmp_path: Path, reader: Reader, pixel_mm: str) -> None:
    for path in dicom_folder(tmp_path):
        edit_dicom(path, PixelSpacing=[pixel_mm, pixel_mm])
    message = read_error(reader, tmp_path, "outside the 0.01-50 mm a CT can have")
    assert "np.float64" not in message


@pytest.mark.parametrize("reader", READERS)
def test_dicom_slice_step_no_ct_has(tmp_path: Path, reader: Reader) -> None:
    for i, path in enumerate(dicom_folder(tmp_path)):
        ds = pydicom.dcmread(path)
        x, y, _ = (float(v) for v in ds.ImagePositionPatient)
        edit_dicom(path, ImagePositionPatient=[str(x), str(y), str(i * 1e5)])
    read_error(reader, tmp_path, "outside the 0.01-50 mm a CT can have")


def test_dicom_single_slice(tmp_path: Path) -> None:
    paths = dicom_folder(tmp_path)
    for path in paths[1:]:
        path.unlink()
    read_error(load_volume, tmp_path, "at least 2 slices, found 1")


def test_dicom_ct_image_without_position(tmp_path: Path) -> None:
    paths = dicom_folder(tmp_path)
    ds = pydicom.dcmread(paths[1])
    del ds.ImagePositionPatient
    ds.save_as(paths[1])
    read_error(load_volume, tmp_path, "without ImagePositionPatient")


def test_dicom_malformed_position(tmp_path: Path) -> None:
    paths = dicom_folder(tmp_path)
    edit_dicom(paths[1], ImagePositionPatient=["1", "2"])
    read_error(load_volume, tmp_path, "ImagePositionPatient is missing or malformed")


def test_dicom_truncated_file(tmp_path: Path) -> None:
    paths = dicom_folder(tmp_path)
    paths[2].write_bytes(paths[2].read_bytes()[:-50])
    read_error(load_volume, tmp_path, f"{paths[2].name}: pixel data cannot be decoded")


def test_dicom_corrupt_pixel_data(tmp_path: Path) -> None:
    """Headers are fine, so opening works; decoding the broken slice fails with its file name."""
    paths = dicom_folder(tmp_path)
    edit_dicom(paths[2], PixelData=b"\0" * 10)
    source = open_volume(tmp_path)
    assert source.read_box((0, 0, 0), (2, 8, 10)).shape == (2, 8, 10)
    with pytest.raises(VolumeReadError, match=f"{paths[2].name}: pixel data"):
        load_volume(tmp_path)


@pytest.mark.parametrize("content", ["nothing", "text", "garbage"])
@pytest.mark.parametrize("reader", READERS)
def test_folder_without_dicom(tmp_path: Path, reader: Reader, content: str) -> None:
    if content == "text":
        (tmp_path / "README.txt").write_text("no images here\n")
        (tmp_path / "IM00001.dcm").write_text("not really DICOM\n")
    elif content == "garbage":
        (tmp_path / "IM00001.dcm").write_bytes(np.random.default_rng(3).bytes(3000))
    read_error(reader, tmp_path, r"no CT image series found \(no DICOM images\)")


def test_folder_with_only_other_modalities(tmp_path: Path) -> None:
    for path in dicom_folder(tmp_path):
        edit_dicom(path, Modality="PT")
    read_error(load_volume, tmp_path, r"no CT image series found \(modalities present: PT\)")


def add_other_series(folder: Path, source_files: list[Path], modality: str) -> str:
    """Copies of ``source_files`` turned into another series (new UIDs, the given modality)."""
    uid = generate_uid()
    for k, path in enumerate(source_files):
        target = folder / f"{modality}{k:03d}.dcm"
        shutil.copy(path, target)
        edit_dicom(target, Modality=modality, SeriesInstanceUID=uid, SOPInstanceUID=generate_uid())
    return uid


@pytest.mark.parametrize("modality", ["PT", "MR"])
@pytest.mark.parametrize("reader", READERS)
def test_dicom_folder_picks_the_ct_series(tmp_path: Path, reader: Reader, modality: str) -> None:
    paths = dicom_folder(tmp_path)
    # A partial other series (3 of 6 files) would be refused as gappy if it were picked.
    add_other_series(tmp_path, paths[::2], modality)
    source = reader(tmp_path)
    assert getattr(source, "series_uid", None) == CT_UID
    assert source.geometry.shape_zyx == SHAPE_ZYX


def test_dicom_localizer_is_dropped(tmp_path: Path) -> None:
    paths = dicom_folder(tmp_path)
    scout = tmp_path / "scout.dcm"
    shutil.copy(paths[0], scout)
    edit_dicom(
        scout,
        ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"],
        ImageOrientationPatient=["1", "0", "0", "0", "0", "-1"],
        SOPInstanceUID=generate_uid(),
    )
    volume = load_volume(tmp_path)
    assert volume.hu_zyx.shape == SHAPE_ZYX


def test_two_ct_series_need_a_series_uid(tmp_path: Path) -> None:
    paths = dicom_folder(tmp_path)
    other = add_other_series(tmp_path, paths, "CT")
    for reader in (load_volume, open_volume):
        message = read_error(reader, tmp_path, "2 CT series in one folder")
        assert CT_UID in message
        assert other in message
        assert "6 slices" in message
    chosen = load_volume(tmp_path, series_uid=other)
    assert chosen.series_uid == other
    np.testing.assert_array_equal(chosen.hu_zyx, load_volume(tmp_path, series_uid=CT_UID).hu_zyx)
    assert getattr(open_volume(tmp_path, series_uid=CT_UID), "series_uid", None) == CT_UID


def test_series_uid_that_is_absent_or_not_ct(tmp_path: Path) -> None:
    paths = dicom_folder(tmp_path)
    pet = add_other_series(tmp_path, paths, "PT")
    read_error(lambda p: load_volume(p, series_uid="1.2.3.4"), tmp_path, "series 1.2.3.4 not found")
    read_error(lambda p: load_volume(p, series_uid=pet), tmp_path, "is not a CT series")


def test_dicom_folder_in_subfolders(tmp_path: Path) -> None:
    """A series spread over nested folders (as exported by PACS) is found by the recursive scan."""
    paths = dicom_folder(tmp_path / "study" / "series")
    (tmp_path / "study" / "series" / "deeper").mkdir()
    paths[0].rename(tmp_path / "study" / "series" / "deeper" / paths[0].name)
    assert load_volume(tmp_path).hu_zyx.shape == SHAPE_ZYX


def test_dicom_written_with_helper_round_trips(tmp_path: Path) -> None:
    volume = small_volume()
    write_dicom(volume, tmp_path)
    loaded = load_volume(tmp_path)
    # FLIP_Z has det -1; the reader keeps a right-handed slice order, so z comes back reversed.
    np.testing.assert_array_equal(loaded.hu_zyx, volume.hu_zyx[::-1])


@pytest.mark.parametrize("suffix", [".mhd", ".mha", ".nii.gz"])
def test_single_slice_volume_is_refused(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"one{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((1, 8, 10), np.int16)), str(path))
    read_error(load_volume, path, "at least 2 voxels along each axis")
