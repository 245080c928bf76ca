"""The one patch function: its fast axis-aligned path equals plain trilinear sampling of the
reference grid, its spec is validated, and the card supplies it."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import ndimage

from model.ct.geometry import Geometry
from model.ct.volume import CTVolume
from model.nn.card import CardError, read_patch_spec
from model.preprocessing import PatchSpec, extract_patch, patch_grid_xyz, patch_hu
from tests.helpers.synthetic import DIRECTIONS


def reference_patch_hu(volume: CTVolume, center_xyz: np.ndarray, spec: PatchSpec) -> np.ndarray:
    """Trilinear sampling of the whole volume at every grid point (slow, obviously right)."""
    index = volume.geometry.world_to_index_zyx(patch_grid_xyz(center_xyz, spec))
    clipped = np.clip(volume.hu_zyx, *spec.hu_window)
    sampled = ndimage.map_coordinates(
        clipped,
        index.reshape(-1, 3).T,
        order=1,
        mode="grid-constant",
        cval=-1000.0,
        prefilter=False,
    )
    return sampled.reshape(spec.patch_shape_zyx)


@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
@pytest.mark.parametrize("where", [(15, 20, 25), (1, 2, 48), (29, 39, 0)])
def test_patch_equals_trilinear_reference(direction: str, where: tuple[int, int, int]) -> None:
    # A seed from the case itself (crc32, not hash(): that is salted per process).
    rng = np.random.default_rng(zlib.crc32(f"{direction}{where}".encode()))
    geometry = Geometry((-10.0, 20.0, -300.0), (0.7, 0.8, 2.0), DIRECTIONS[direction], (30, 40, 50))
    volume = CTVolume(rng.normal(-500, 400, (30, 40, 50)).astype(np.float32), geometry)
    spec = PatchSpec(patch_shape_zyx=(20, 24, 28), spacing_mm=0.9)
    center = geometry.index_zyx_to_world(np.asarray(where) + rng.uniform(-0.4, 0.4, 3))
    np.testing.assert_allclose(
        patch_hu(volume, center, spec), reference_patch_hu(volume, center, spec), atol=1e-3
    )


def test_patch_axes_are_world_z_y_x() -> None:
    geometry = Geometry(
        (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), DIRECTIONS["permuted_flipped"], (40, 40, 40)
    )
    world = geometry.index_zyx_to_world(np.moveaxis(np.indices((40, 40, 40)), 0, -1).astype(float))
    # HU grows along world +x only: the patch must grow along its last axis only.
    volume = CTVolume((world[..., 0] * 10.0).astype(np.float32), geometry)
    center = world[20, 20, 20]
    spec = PatchSpec(patch_shape_zyx=(8, 8, 8), spacing_mm=1.0, hu_window=(-1000.0, 1000.0))
    hu = patch_hu(volume, center, spec)
    np.testing.assert_allclose(np.diff(hu, axis=2), 10.0, atol=1e-3)
    np.testing.assert_allclose(np.diff(hu, axis=1), 0.0, atol=1e-3)
    np.testing.assert_allclose(np.diff(hu, axis=0), 0.0, atol=1e-3)


def test_window_and_scale() -> None:
    geometry = Geometry((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), DIRECTIONS["identity"], (10, 10, 10))
    values = np.full((10, 10, 10), -3024.0, np.float32)  # scanner padding below air
    values[5:] = 1000.0
    volume = CTVolume(values, geometry)
    spec = PatchSpec(patch_shape_zyx=(10, 2, 2), spacing_mm=1.0, hu_window=(-1000.0, 400.0))
    patch = extract_patch(volume, (4.5, 4.5, 4.5), spec)
    assert patch.dtype == np.float32
    np.testing.assert_allclose(patch[:5, 0, 0], 0.0, atol=1e-6)  # padding is clipped to air
    np.testing.assert_allclose(patch[5:, 0, 0], 1.0, atol=1e-6)


@pytest.mark.parametrize(
    "bad",
    [
        {"hu_window": (400.0, -1000.0)},
        {"hu_window": (float("nan"), 0.0)},
        {"spacing_mm": 0.0},
        {"patch_shape_zyx": (0, 4, 4)},
        {"patch_shape_zyx": (4, 4, 4096)},
        {"unknown": 1},
    ],
)
def test_spec_is_validated(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PatchSpec.model_validate(bad)


def test_card_supplies_the_spec(tmp_path: Path) -> None:
    spec = PatchSpec(patch_shape_zyx=(32, 32, 32), spacing_mm=0.75)
    (tmp_path / "card.json").write_text(json.dumps({"preprocessing": spec.model_dump()}))
    assert read_patch_spec(tmp_path) == spec
    (tmp_path / "card.json").write_text("{not json")
    with pytest.raises(CardError, match="cannot read"):
        read_patch_spec(tmp_path)
    with pytest.raises(CardError, match=r"no card\.json"):
        read_patch_spec(tmp_path / "missing")
