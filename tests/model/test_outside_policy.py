"""The patch function's ``outside`` policy: air, or the volume's edge repeated, on every path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from model.ct.geometry import Geometry
from model.ct.volume import CTVolume
from model.nn.card import compute_fingerprint, read_card
from model.nn.checkpoint import save_model
from model.nn.network import NetworkConfig, NoduleNet
from model.preprocessing import PatchSpec, patch_grid_xyz, patch_hu
from tests.helpers.synthetic import DIRECTIONS


def edge_reference(volume: CTVolume, center_xyz: np.ndarray, spec: PatchSpec) -> np.ndarray:
    """Trilinear sampling of the whole volume with the nearest edge voxel repeated outside it."""
    index = volume.geometry.world_to_index_zyx(patch_grid_xyz(center_xyz, spec))
    clipped = np.clip(volume.hu_zyx, *spec.hu_window)
    inside = np.clip(index.reshape(-1, 3), 0.0, np.asarray(clipped.shape) - 1.0)
    sampled = ndimage.map_coordinates(clipped, inside.T, order=1, mode="nearest", prefilter=False)
    return sampled.reshape(spec.patch_shape_zyx)


def _volume(direction: str, seed: int) -> CTVolume:
    geometry = Geometry((-10.0, 20.0, -300.0), (0.7, 0.8, 2.0), DIRECTIONS[direction], (12, 40, 50))
    # Never at the window's low end, so -1000 in a patch can only be air.
    hu = np.random.default_rng(seed).uniform(-900, 300, (12, 40, 50)).astype(np.float32)
    return CTVolume(hu, geometry)


@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
@pytest.mark.parametrize("where", [(6, 20, 25), (0, 2, 48), (11, 39, 0)])
def test_edge_policy_repeats_the_nearest_voxel(direction: str, where: tuple[int, int, int]) -> None:
    """A thin volume (a VOI-like crop) is padded with its own edge, axis-aligned or oblique."""
    volume = _volume(direction, seed=sum(where) + len(direction))
    spec = PatchSpec(patch_shape_zyx=(20, 24, 28), spacing_mm=0.9, outside="edge")
    center = volume.geometry.index_zyx_to_world(np.asarray(where, dtype=np.float64) + 0.3)
    patch = patch_hu(volume, center, spec)
    np.testing.assert_allclose(patch, edge_reference(volume, center, spec), atol=1e-3)
    air = patch_hu(volume, center, spec.model_copy(update={"outside": "air"}))
    if where != (6, 20, 25):  # near a face: part of the grid is outside, air under "air"
        assert (air == -1000.0).mean() > 0.05
        assert not (patch == -1000.0).any()


def test_a_grid_inside_the_volume_is_the_same_under_both_policies() -> None:
    volume = _volume("identity", seed=1)
    spec = PatchSpec(patch_shape_zyx=(4, 8, 8), spacing_mm=1.0)
    center = volume.geometry.index_zyx_to_world(np.array([6.0, 20.0, 25.0]))
    np.testing.assert_array_equal(
        patch_hu(volume, center, spec),
        patch_hu(volume, center, spec.model_copy(update={"outside": "edge"})),
    )


def test_the_policy_is_part_of_the_fingerprint_and_old_cards_keep_theirs(tmp_path: Path) -> None:
    config = NetworkConfig(width=4, levels=3)
    air = PatchSpec(patch_shape_zyx=(16, 16, 16), spacing_mm=2.0)
    edge = air.model_copy(update={"outside": "edge"})
    assert compute_fingerprint("w", air, config) != compute_fingerprint("w", edge, config)
    # A card written before the policy existed has no "outside" key: it reads as air, valid.
    torch.manual_seed(0)
    save_model(tmp_path / "m", NoduleNet(config), air, code_version="t")
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    del card["preprocessing"]["outside"]
    (tmp_path / "m" / "card.json").write_text(json.dumps(card))
    assert read_card(tmp_path / "m").preprocessing.outside == "air"
    save_model(tmp_path / "e", NoduleNet(config), edge, code_version="t")
    assert read_card(tmp_path / "e").preprocessing.outside == "edge"
    assert read_card(tmp_path / "e").summary()["outside"] == "edge"
