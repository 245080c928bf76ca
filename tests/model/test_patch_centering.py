"""A bright ball at a known world point lands in the centre of its patch, in every format."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from model.ct.geometry import Geometry
from model.ct.open import load_volume
from model.ct.volume import CTVolume
from model.preprocessing import PatchSpec, extract_patch, patch_grid_xyz, patch_hu
from tests.helpers.synthetic import (
    FLIP_YZ,
    FLIP_Z,
    OBLIQUE,
    SWAP_XY,
    assert_patch_matches_reference,
    make_geometry,
    rotation,
    sphere_hu,
    write_all_formats,
)

SPEC = PatchSpec(patch_shape_zyx=(32, 32, 32), spacing_mm=1.0, hu_window=(-1000.0, 400.0))
BACKGROUND, FOREGROUND = -800.0, 200.0
RADIUS_MM = 5.0
SHAPE_ZYX = (70, 90, 100)
SPACING_XYZ = (0.7, 0.8, 2.0)
ORIGIN_XYZ = (-123.4, 56.7, -289.1)
#: The ball's centre as a continuous index, deliberately between voxel centres on every axis.
BALL_INDEX_ZYX = (33.37, 41.61, 52.29)


def centroid_zyx(patch: npt.NDArray[np.float32], spec: PatchSpec) -> npt.NDArray[np.float64]:
    """Intensity-weighted centroid (patch voxel units) of the part brighter than the background."""
    low, high = spec.hu_window
    background = (BACKGROUND - low) / (high - low)
    foreground = (FOREGROUND - low) / (high - low)
    weight = np.where(patch > background + 0.05 * (foreground - background), patch - background, 0)
    assert weight.sum() > 0, "the ball is not in the patch at all"
    grid = np.indices(patch.shape, dtype=np.float64)
    return np.array([(g * weight).sum() / weight.sum() for g in grid])


def ball_volume(direction: tuple[float, ...]) -> tuple[CTVolume, npt.NDArray[np.float64]]:
    geometry: Geometry = make_geometry(SHAPE_ZYX, SPACING_XYZ, ORIGIN_XYZ, direction)
    center_xyz = geometry.index_zyx_to_world(BALL_INDEX_ZYX)
    hu = sphere_hu(geometry, center_xyz, RADIUS_MM, background=BACKGROUND, foreground=FOREGROUND)
    return CTVolume(hu_zyx=hu, geometry=geometry), center_xyz


DIRECTIONS = [
    pytest.param(FLIP_YZ, id="flip-yz-det+1"),
    pytest.param(FLIP_Z, id="flip-z-det-1"),
    pytest.param(SWAP_XY, id="swap-xy-det-1"),
    pytest.param(OBLIQUE, id="oblique"),
]


@pytest.fixture(scope="module", params=DIRECTIONS)
def written(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[CTVolume, npt.NDArray[np.float64], dict[str, Path]]:
    direction: tuple[float, ...] = request.param
    volume, center = ball_volume(direction)
    paths = write_all_formats(volume, tmp_path_factory.mktemp("ball"))
    return volume, center, paths


def test_ball_is_not_on_a_voxel_center() -> None:
    """Guard for the fixture itself: the centre is off-grid and the ball is really there."""
    volume, center = ball_volume(FLIP_Z)
    index = volume.geometry.world_to_index_zyx(center)
    assert np.all(np.abs(index - np.rint(index)) > 0.2)
    nearest = tuple(int(v) for v in np.rint(index))
    assert volume.hu_zyx[nearest] > 150
    assert volume.hu_zyx[0, 0, 0] == BACKGROUND


@pytest.mark.parametrize("fmt", ["memory", "mhd", "nii.gz", "dicom"])
def test_ball_centered_in_patch(
    written: tuple[CTVolume, npt.NDArray[np.float64], dict[str, Path]], fmt: str
) -> None:
    volume, center, paths = written
    source = volume if fmt == "memory" else load_volume(paths[fmt])
    patch = extract_patch(source, center.tolist(), SPEC)
    assert patch.shape == SPEC.patch_shape_zyx
    assert patch.dtype == np.float32
    expected = (np.asarray(SPEC.patch_shape_zyx, dtype=np.float64) - 1) / 2
    offset_mm = (centroid_zyx(patch, SPEC) - expected) * SPEC.spacing_mm
    assert np.all(np.abs(offset_mm) < 0.5), f"ball centroid off by {offset_mm} mm (z, y, x)"
    # The patch corners are background: the ball is small and the whole cube is inside the scan.
    low, high = SPEC.hu_window
    np.testing.assert_allclose(patch[0, 0, 0], (BACKGROUND - low) / (high - low), atol=1e-6)


def test_patch_axes_follow_world_z_y_x(
    written: tuple[CTVolume, npt.NDArray[np.float64], dict[str, Path]],
) -> None:
    """Moving the patch centre +3 mm along world x moves the ball 3 voxels towards -x (axis 2)."""
    volume, center, _ = written
    c0 = centroid_zyx(extract_patch(volume, center.tolist(), SPEC), SPEC)
    for world_axis, patch_axis in ((0, 2), (1, 1), (2, 0)):
        shifted = center.copy()
        shifted[world_axis] += 3.0
        c1 = centroid_zyx(extract_patch(volume, shifted.tolist(), SPEC), SPEC)
        expected = np.zeros(3)
        expected[patch_axis] = -3.0
        np.testing.assert_allclose(c1 - c0, expected, atol=0.3)


def test_readers_give_the_same_patch(
    written: tuple[CTVolume, npt.NDArray[np.float64], dict[str, Path]],
) -> None:
    volume, center, paths = written
    reference = extract_patch(volume, center.tolist(), SPEC)
    for fmt, path in paths.items():
        loaded = load_volume(path)
        # The same voxel-centre box in the world, whatever order the reader keeps the slices in.
        for got, want in zip(
            loaded.geometry.extent_world_xyz(), volume.geometry.extent_world_xyz(), strict=True
        ):
            np.testing.assert_allclose(got, want, atol=1e-3, err_msg=fmt)
        assert sorted(loaded.geometry.spacing_xyz) == pytest.approx(sorted(SPACING_XYZ), abs=1e-5)
        patch = extract_patch(loaded, center.tolist(), SPEC)
        # 1e-4 of the window is 0.14 HU: only geometry rounding (DICOM decimal strings, NIfTI
        # float32) may differ; the stored HU are the same integers in every format.
        np.testing.assert_allclose(patch, reference, atol=1e-4, err_msg=fmt)


def test_patch_grid_is_centered_and_world_aligned() -> None:
    grid = patch_grid_xyz([1.0, 2.0, 3.0], SPEC)
    assert grid.shape == (*SPEC.patch_shape_zyx, 3)
    np.testing.assert_allclose(grid.reshape(-1, 3).mean(axis=0), [1.0, 2.0, 3.0], atol=1e-9)
    # axis 0 steps world z, axis 1 world y, axis 2 world x, each by spacing_mm
    np.testing.assert_allclose(grid[1, 0, 0] - grid[0, 0, 0], [0, 0, 1.0])
    np.testing.assert_allclose(grid[0, 1, 0] - grid[0, 0, 0], [0, 1.0, 0])
    np.testing.assert_allclose(grid[0, 0, 1] - grid[0, 0, 0], [1.0, 0, 0])


def signed_permutation(perm: tuple[int, ...], signs: tuple[float, ...]) -> tuple[float, ...]:
    d = np.zeros((3, 3))
    for column, (row, sign) in enumerate(zip(perm, signs, strict=True)):
        d[row, column] = sign
    return tuple(float(v) for v in d.reshape(-1))


ALL_DIRECTIONS = [
    pytest.param(signed_permutation(perm, signs), id=f"perm{''.join(map(str, perm))}-{k}")
    for perm in itertools.permutations(range(3))
    for k, signs in enumerate(itertools.product((-1.0, 1.0), repeat=3))
] + [pytest.param(OBLIQUE, id="oblique"), pytest.param(rotation(-35.0, 50.0), id="oblique2")]


@pytest.mark.parametrize("direction", ALL_DIRECTIONS)
def test_patch_values_for_every_orientation(direction: tuple[float, ...]) -> None:
    """All 48 axis permutations/flips and two oblique turns: trilinear samples, air outside."""
    shape = (12, 14, 16)
    geometry = make_geometry(shape, (0.7, 1.1, 1.6), (3.3, -7.1, 12.0), direction)
    hu = np.random.default_rng(0).integers(-1100, 500, shape).astype(np.float32)
    volume = CTVolume(hu_zyx=hu, geometry=geometry)
    spec = PatchSpec(patch_shape_zyx=(5, 6, 7), spacing_mm=0.9, hu_window=(-1000.0, 400.0))
    checked_inside = checked_air = 0
    for index in ((5.3, 6.7, 7.2), (0.1, 0.2, 15.3), (11.4, 0.3, 0.2)):
        center = geometry.index_zyx_to_world(index).tolist()
        values = patch_hu(volume, center, spec)
        assert values.shape == spec.patch_shape_zyx
        grid_index = geometry.world_to_index_zyx(patch_grid_xyz(center, spec))
        n_inside, n_air = assert_patch_matches_reference(values, hu, grid_index, spec.hu_window)
        checked_inside += n_inside
        checked_air += n_air
    assert checked_inside > 210
    assert checked_air > 210
