"""Region reads (only the box a patch needs) give exactly what the whole-volume read gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
import pytest

from model.ct.dicom import DicomSeriesSource
from model.ct.itk import MetaImageRegionSource
from model.ct.open import load_volume, open_volume
from model.ct.volume import CTVolume, VolumeSource
from model.preprocessing import (
    CoordinateOutsideVolumeError,
    PatchSpec,
    extract_patch,
    patch_grid_xyz,
    patch_hu,
)
from tests.helpers.synthetic import (
    FLIP_Z,
    OBLIQUE,
    assert_patch_matches_reference,
    make_geometry,
    trilinear,
    write_dicom,
    write_itk,
)

#: Not a cube, so that a mix-up of patch axes changes the shape or the values.
SPEC = PatchSpec(patch_shape_zyx=(12, 16, 20), spacing_mm=1.0, hu_window=(-1000.0, 400.0))
SHAPE_ZYX = (40, 50, 60)
SPACING_XYZ = (0.7, 0.8, 2.0)
ORIGIN_XYZ = (31.5, -77.25, -150.0)


def textured_volume(direction: tuple[float, ...]) -> CTVolume:
    """Integer HU in the window that differ from voxel to voxel, so any misplaced voxel shows."""
    geometry = make_geometry(SHAPE_ZYX, SPACING_XYZ, ORIGIN_XYZ, direction)
    rng = np.random.default_rng(1234)
    hu = rng.integers(-1000, 400, size=SHAPE_ZYX).astype(np.float32)
    return CTVolume(hu_zyx=hu, geometry=geometry)


@pytest.fixture(
    scope="module", params=[pytest.param(FLIP_Z, id="flip-z"), pytest.param(OBLIQUE, id="oblique")]
)
def files(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[CTVolume, dict[str, Path]]:
    direction: tuple[float, ...] = request.param
    volume = textured_volume(direction)
    folder = tmp_path_factory.mktemp("region")
    return volume, {
        "mhd": write_itk(volume, folder / "ct.mhd"),
        "mhd-compressed": write_itk(volume, folder / "zct.mhd", compress=True),
        "nii.gz": write_itk(volume, folder / "ct.nii.gz"),
        "dicom": write_dicom(volume, folder / "dicom"),
    }


def centers_xyz(volume: CTVolume) -> list[npt.NDArray[np.float64]]:
    """Patch centres: random interior points, an edge point and one near a volume corner."""
    rng = np.random.default_rng(5)
    upper = np.asarray(volume.geometry.shape_zyx, dtype=np.float64) - 1
    indices = [rng.uniform(0.3 * upper, 0.7 * upper) for _ in range(4)]
    indices.append(np.array([upper[0] - 0.2, upper[1] / 2 + 0.3, 0.6]))  # at a face
    indices.append(np.array([0.2, 0.3, upper[2] - 0.1]))  # near a corner
    return [volume.geometry.index_zyx_to_world(i) for i in indices]


def test_sources_are_region_readers(files: tuple[CTVolume, dict[str, Path]]) -> None:
    _, paths = files
    assert isinstance(open_volume(paths["mhd"]), MetaImageRegionSource)
    assert isinstance(open_volume(paths["dicom"]), DicomSeriesSource)
    # Compressed MetaImage and NIfTI cannot be read by region: they are loaded whole.
    assert isinstance(open_volume(paths["mhd-compressed"]), CTVolume)
    assert isinstance(open_volume(paths["nii.gz"]), CTVolume)
    for path in paths.values():
        assert isinstance(open_volume(path), VolumeSource)


@pytest.mark.parametrize("fmt", ["mhd", "dicom"])
def test_read_box_equals_whole_read(files: tuple[CTVolume, dict[str, Path]], fmt: str) -> None:
    _, paths = files
    source = open_volume(paths[fmt])
    whole = load_volume(paths[fmt])
    assert source.geometry == whole.geometry
    rng = np.random.default_rng(3)
    shape = np.asarray(whole.geometry.shape_zyx)
    corners = [(np.zeros(3, np.int64), shape), (np.zeros(3, np.int64), np.ones(3, np.int64))]
    corners.append((shape - 1, shape))
    for _ in range(5):
        low = rng.integers(0, shape - 1)
        corners.append((low, rng.integers(low + 1, shape + 1)))
    for low, high in corners:
        start, stop = [int(v) for v in low], [int(v) for v in high]
        box = source.read_box(start, stop)
        assert box.dtype == np.float32
        (z0, y0, x0), (z1, y1, x1) = start, stop
        np.testing.assert_array_equal(box, whole.hu_zyx[z0:z1, y0:y1, x0:x1])


def test_mhd_holds_the_written_array(files: tuple[CTVolume, dict[str, Path]]) -> None:
    volume, paths = files
    for fmt in ("mhd", "mhd-compressed", "nii.gz"):
        np.testing.assert_array_equal(load_volume(paths[fmt]).hu_zyx, volume.hu_zyx, err_msg=fmt)


@pytest.mark.parametrize("fmt", ["mhd", "dicom", "mhd-compressed", "nii.gz"])
def test_region_patch_equals_whole_patch(files: tuple[CTVolume, dict[str, Path]], fmt: str) -> None:
    volume, paths = files
    source = open_volume(paths[fmt])
    whole = load_volume(paths[fmt])
    for center in centers_xyz(volume):
        region_patch = extract_patch(source, center.tolist(), SPEC)
        whole_patch = extract_patch(whole, center.tolist(), SPEC)
        np.testing.assert_array_equal(region_patch, whole_patch)
        # And the same as the in-memory original, up to the rounding of the files' geometry.
        np.testing.assert_allclose(
            region_patch, extract_patch(volume, center.tolist(), SPEC), atol=1e-4
        )


def test_patch_values_are_trilinear_samples(files: tuple[CTVolume, dict[str, Path]]) -> None:
    """Inside the volume every patch voxel is the trilinear interpolation of the windowed HU."""
    volume, paths = files
    source = open_volume(paths["mhd"])
    low, high = SPEC.hu_window
    hu = np.clip(volume.hu_zyx, low, high)
    for center in centers_xyz(volume)[:4]:
        index = volume.geometry.world_to_index_zyx(patch_grid_xyz(center.tolist(), SPEC))
        assert np.all(index >= 0)
        assert np.all(index <= np.asarray(SHAPE_ZYX) - 1)
        expected = (trilinear(hu, index) - low) / (high - low)
        np.testing.assert_allclose(
            extract_patch(source, center.tolist(), SPEC), expected, atol=1e-5
        )


@pytest.mark.parametrize("fmt", ["mhd", "dicom"])
def test_corner_patch_is_padded_with_air(files: tuple[CTVolume, dict[str, Path]], fmt: str) -> None:
    volume, paths = files
    center = centers_xyz(volume)[-1]
    source = open_volume(paths[fmt])
    patch = patch_hu(source, center.tolist(), SPEC)
    whole = load_volume(paths[fmt])
    np.testing.assert_array_equal(patch, patch_hu(whole, center.tolist(), SPEC))
    index = whole.geometry.world_to_index_zyx(patch_grid_xyz(center.tolist(), SPEC))
    n_inside, n_air = assert_patch_matches_reference(patch, whole.hu_zyx, index, SPEC.hu_window)
    assert n_air > patch.size // 4, "the corner patch should stick out of the volume"
    assert n_inside > patch.size // 20, "the corner patch should overlap the volume"
    # Air is -1000 HU, the window's low end: 0 after scaling.
    scaled = extract_patch(source, center.tolist(), SPEC)
    assert np.count_nonzero(np.abs(scaled) < 1e-6) >= n_air


def test_dicom_region_read_decodes_only_the_covered_slices(
    files: tuple[CTVolume, dict[str, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    volume, paths = files
    source = open_volume(paths["dicom"])
    decoded: list[str] = []
    dcmread = pydicom.dcmread

    def counting_dcmread(path: Path, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("stop_before_pixels"):
            decoded.append(str(path))
        return dcmread(path, *args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmread", counting_dcmread)
    extract_patch(source, centers_xyz(volume)[0].tolist(), SPEC)
    # A 12 mm high patch through 2 mm slices (tilted at most 10 degrees) needs at most 10 slices.
    assert 0 < len(decoded) <= 10 < SHAPE_ZYX[0]
    assert len(set(decoded)) == len(decoded)


@pytest.mark.parametrize("fmt", ["mhd", "dicom", "nii.gz"])
def test_center_outside_volume_is_refused(
    files: tuple[CTVolume, dict[str, Path]], fmt: str
) -> None:
    volume, paths = files
    source = open_volume(paths[fmt])
    upper = np.asarray(SHAPE_ZYX, dtype=np.float64) - 1
    for index in ([-3.0, 10.0, 10.0], [10.0, upper[1] + 0.7, 10.0], [10.0, 10.0, -0.6]):
        center = volume.geometry.index_zyx_to_world(index).tolist()
        with pytest.raises(CoordinateOutsideVolumeError, match="outside the volume"):
            extract_patch(source, center, SPEC)
    far = [1e6, 0.0, 0.0]
    with pytest.raises(CoordinateOutsideVolumeError, match=r"world extent x"):
        patch_hu(source, far, SPEC)


@pytest.mark.parametrize(
    "center",
    [[float("nan"), 0.0, 0.0], [0.0, float("inf"), 0.0], [1.0, 2.0], [1.0, 2.0, 3.0, 4.0]],
)
def test_bad_center_is_a_value_error(
    files: tuple[CTVolume, dict[str, Path]], center: list[float]
) -> None:
    _, paths = files
    source = open_volume(paths["mhd"])
    with pytest.raises(ValueError, match="3 finite numbers") as info:
        extract_patch(source, center, SPEC)
    assert not isinstance(info.value, CoordinateOutsideVolumeError)


def test_read_box_outside_volume_is_refused(files: tuple[CTVolume, dict[str, Path]]) -> None:
    _, paths = files
    for fmt in ("mhd", "dicom"):
        source = open_volume(paths[fmt])
        with pytest.raises(ValueError, match="not inside volume shape"):
            source.read_box((0, 0, 0), (SHAPE_ZYX[0] + 1, 1, 1))
        with pytest.raises(ValueError, match="not inside volume shape"):
            source.read_box((-1, 0, 0), (1, 1, 1))
        with pytest.raises(ValueError, match="not inside volume shape"):
            source.read_box((3, 3, 3), (3, 4, 4))


def test_padding_is_clipped_before_interpolation() -> None:
    """Scanner padding (-3024 HU) next to tissue must not drag the interpolated value below air."""
    geometry = make_geometry((20, 20, 20), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), FLIP_Z)
    hu = np.zeros((20, 20, 20), dtype=np.float32)
    hu[:, :, :10] = -3024.0
    volume = CTVolume(hu_zyx=hu, geometry=geometry)
    # Patch voxel x positions are at array x 8.5, 9.5, 10.5 and 11.5; 9.5 is between padding (9)
    # and tissue (10).
    center = geometry.index_zyx_to_world([10.0, 10.0, 10.0]).tolist()
    spec = PatchSpec(patch_shape_zyx=(4, 4, 4), spacing_mm=1.0, hu_window=(-1000.0, 400.0))
    hu_patch = patch_hu(volume, center, spec)
    # Clipped first: (-1000 + 0) / 2; interpolating -3024 first would give -1512, then -1000.
    np.testing.assert_allclose(hu_patch[:, :, 1], -500.0, atol=1e-4)
    np.testing.assert_allclose(hu_patch[:, :, 0], -1000.0, atol=1e-4)
    np.testing.assert_allclose(hu_patch[:, :, 2:], 0.0, atol=1e-4)


@pytest.mark.parametrize(
    ("msb", "dtype", "element"), [("True", ">i2", "MET_SHORT"), ("False", "<f4", "MET_FLOAT")]
)
def test_region_read_honours_byte_order_and_type(
    tmp_path: Path, msb: str, dtype: str, element: str
) -> None:
    values = np.random.default_rng(5).integers(-1000, 1000, (6, 8, 10)).astype(dtype)
    (tmp_path / "ct.raw").write_bytes(values.tobytes())
    (tmp_path / "ct.mhd").write_text(
        "ObjectType = Image\nNDims = 3\nBinaryData = True\n"
        f"BinaryDataByteOrderMSB = {msb}\nCompressedData = False\n"
        "TransformMatrix = 1 0 0 0 -1 0 0 0 1\nOffset = -5 7 -100\n"
        f"ElementSpacing = 0.7 0.8 2\nDimSize = 10 8 6\nElementType = {element}\n"
        "ElementDataFile = ct.raw\n"
    )
    region = open_volume(tmp_path / "ct.mhd")
    whole = load_volume(tmp_path / "ct.mhd")
    np.testing.assert_array_equal(whole.hu_zyx, values.astype(np.float32))
    np.testing.assert_array_equal(
        region.read_box((1, 2, 3), (5, 7, 9)), whole.hu_zyx[1:5, 2:7, 3:9]
    )
