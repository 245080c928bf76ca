"""``model.clinical.nodule_mask``: the mask branch's mask on the CT's own voxels, or region
growing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.clinical.measure import GROW_METHOD, NETWORK_METHOD, MeasureError
from model.clinical.nodule_mask import find_nodule, network_region
from model.ct.geometry import Geometry
from model.ct.volume import CTVolume
from model.nn.card import MaskPolicy, read_card, write_card
from model.nn.checkpoint import save_model
from model.nn.embedder import Embedder
from model.nn.network import NetworkConfig, NoduleNet
from model.preprocessing import PatchSpec
from tests.helpers.segmenter import threshold_segmenter

SPEC = PatchSpec()  # the default: 32^3 voxels of 1.25 mm
CENTER_XYZ = (10.0, -20.0, 30.0)


def _embedder(network: NoduleNet, tmp_path: Path) -> Embedder:
    path = tmp_path / "m"
    save_model(path, network, SPEC, code_version="test")
    return Embedder(network, read_card(path), "cpu")


def _ball_ct(direction: np.ndarray, spacing_xyz: tuple[float, float, float]) -> CTVolume:
    """Lung (-850 HU) with a solid ball of 12 mm diameter at ``CENTER_XYZ``, on a rotated grid."""
    size_xyz = np.array([64, 64, 40])
    # The origin puts the grid's centre voxel at the ball's centre whatever the direction.
    half = (size_xyz - 1) / 2.0 * np.asarray(spacing_xyz)
    origin = np.asarray(CENTER_XYZ) - direction @ half
    geometry = Geometry.from_itk(origin, spacing_xyz, direction.reshape(-1), size_xyz)
    index = np.indices(geometry.shape_zyx).reshape(3, -1).T
    distance = np.linalg.norm(geometry.index_zyx_to_world(index) - np.asarray(CENTER_XYZ), axis=1)
    hu = np.where(distance <= 6.0, 20.0, -850.0).reshape(geometry.shape_zyx).astype(np.float32)
    return CTVolume(hu, geometry)


def _rotation(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize(
    ("direction", "spacing_xyz"),
    [
        (np.eye(3), (0.7, 0.7, 1.25)),
        (_rotation(30.0) @ np.diag([1.0, -1.0, -1.0]), (0.8, 0.6, 2.0)),
    ],
)
def test_the_branchs_mask_lies_on_the_cts_voxels_and_measures_the_ball(
    direction: np.ndarray, spacing_xyz: tuple[float, float, float], tmp_path: Path
) -> None:
    ct = _ball_ct(direction, spacing_xyz)
    # The branch's threshold halfway between the lung and the ball: the edge where it is.
    embedder = _embedder(threshold_segmenter(SPEC, threshold_hu=-415.0), tmp_path)
    region = network_region(embedder, ct, CENTER_XYZ)
    assert region is not None
    assert region.geometry.spacing_xyz == ct.geometry.spacing_xyz
    np.testing.assert_allclose(region.geometry.direction_matrix, ct.geometry.direction_matrix)
    # The mask sits on the ball: its centroid in world mm is the ball's centre, whatever the
    # grid's direction (a frame error would move it), and it covers the ball's voxels (up to
    # the patch's 1.25 mm resampling at the edge).
    index = np.argwhere(region.mask_zyx) + np.asarray(region.start_zyx)
    centroid = ct.geometry.index_zyx_to_world(index).mean(axis=0)
    np.testing.assert_allclose(centroid, CENTER_XYZ, atol=0.3)
    stop = [a + n for a, n in zip(region.start_zyx, region.mask_zyx.shape, strict=True)]
    truth = ct.read_box(region.start_zyx, stop) > -400
    dice = 2 * (region.mask_zyx & truth).sum() / (region.mask_zyx.sum() + truth.sum())
    assert dice > 0.8
    assert region.measurement.mean_diameter_mm == pytest.approx(12.0, abs=2.5)
    assert region.measurement.volume_mm3 == pytest.approx(4 / 3 * np.pi * 6.0**3, rel=0.35)
    assert region.measurement.nodule_type == "solid"
    found = find_nodule(embedder, ct, CENTER_XYZ)
    assert found is not None
    assert found.method == NETWORK_METHOD


def test_without_a_branch_or_a_mask_region_growing_answers(tmp_path: Path) -> None:
    ct = _ball_ct(np.eye(3), (0.7, 0.7, 1.25))
    plain = NoduleNet(NetworkConfig(width=4, levels=3)).eval()
    found = find_nodule(_embedder(plain, tmp_path), ct, CENTER_XYZ)
    assert found is not None
    assert found.method == GROW_METHOD
    # A branch that sees nothing at the point (threshold above the ball) leaves it to growing.
    blind = _embedder(threshold_segmenter(SPEC, threshold_hu=200.0), tmp_path)
    assert network_region(blind, ct, CENTER_XYZ) is None
    found = find_nodule(blind, ct, CENTER_XYZ)
    assert found is not None
    assert found.method == GROW_METHOD
    with pytest.raises(MeasureError, match="outside the volume"):
        find_nodule(blind, ct, (500.0, 0.0, 0.0))


def test_the_cards_mask_policy_has_region_growing_measure_in_its_ranges(tmp_path: Path) -> None:
    ct = _ball_ct(np.eye(3), (0.7, 0.7, 1.25))
    embedder = _embedder(threshold_segmenter(SPEC, threshold_hu=-415.0), tmp_path)
    branch = find_nodule(embedder, ct, CENTER_XYZ)
    assert branch is not None
    assert branch.method == NETWORK_METHOD
    assert branch.branch_region is branch.region
    # The 12 mm ball measures 10-20 mm by the branch: the policy hands it to region growing,
    # and keeps the branch's own region for the evaluation.
    policy = MaskPolicy(region_growing_mm=((10.0, 20.0),), chosen_by="test")
    card = embedder.card.model_copy(update={"mask_policy": policy})
    grown = find_nodule(Embedder(embedder.network, card, "cpu"), ct, CENTER_XYZ)
    assert grown is not None
    assert grown.method == GROW_METHOD
    assert grown.estimated_by == "region growing"
    assert grown.branch_region is not None
    assert grown.branch_region.measurement == branch.region.measurement
    # Outside the ranges the branch answers.
    small = MaskPolicy(region_growing_mm=((0.0, 6.0),))
    card = embedder.card.model_copy(update={"mask_policy": small})
    kept = find_nodule(Embedder(embedder.network, card, "cpu"), ct, CENTER_XYZ)
    assert kept is not None
    assert kept.method == NETWORK_METHOD


def test_a_card_keeps_its_mask_policy_and_its_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "m"
    save_model(path, threshold_segmenter(SPEC), SPEC, code_version="test")
    card = read_card(path)
    assert card.mask_policy == MaskPolicy()  # cards before the policy read as "branch always"
    policy = MaskPolicy(region_growing_mm=((10.0, 20.0),), chosen_by="crossval")
    write_card(path, card.model_copy(update={"mask_policy": policy}))
    again = read_card(path)  # the policy changes sizes, not vectors: the fingerprint holds
    assert again.mask_policy == policy
    assert again.fingerprint == card.fingerprint
    assert policy.prefers_growing(10.0)
    assert not policy.prefers_growing(20.0)
