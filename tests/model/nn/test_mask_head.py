"""The network's mask branch, its loss and the measurement of its mask (fast, synthetic)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.clinical.measure import (
    mask_from_probability,
    measure_patch_mask,
    patch_geometry,
    sphericity,
)
from model.nn.card import compute_fingerprint
from model.nn.loss import segmentation_loss
from model.nn.network import NetworkConfig, NoduleNet
from model.preprocessing import PatchSpec, patch_grid_xyz

SPEC = PatchSpec()  # 32^3 voxels of 1.25 mm


def _ball(radius_mm: float, spacing_mm: float = 1.25, side: int = 32) -> np.ndarray:
    axis = (np.arange(side) - (side - 1) / 2.0) * spacing_mm
    zz, yy, xx = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.asarray(np.sqrt(zz**2 + yy**2 + xx**2) <= radius_mm)


def test_without_segmentation_the_network_and_its_fingerprint_are_unchanged() -> None:
    config = NetworkConfig(width=4, levels=3)
    assert config.segmentation is False
    torch.manual_seed(0)
    keys = set(NoduleNet(config).state_dict())
    assert not any(k.startswith("seg_") for k in keys)
    with_mask = NoduleNet(NetworkConfig(width=4, levels=3, segmentation=True)).state_dict()
    assert keys < set(with_mask)
    assert {k.split(".")[0] for k in set(with_mask) - keys} == {"seg_decoder", "seg_head"}
    # A card written before the field existed has no "segmentation" in its arch.
    before = config.model_dump(mode="json", exclude={"segmentation"})
    assert compute_fingerprint("w", SPEC, config) == compute_fingerprint(
        "w", SPEC, NetworkConfig.model_validate(before)
    )
    assert compute_fingerprint("w", SPEC, config) != compute_fingerprint(
        "w", SPEC, NetworkConfig(width=4, levels=3, segmentation=True)
    )
    with pytest.raises(RuntimeError, match="no segmentation branch"):
        NoduleNet(config).segment(torch.rand(1, 1, 16, 16, 16))


@pytest.mark.parametrize("levels", [1, 3])
def test_segmentation_gives_a_logit_per_voxel_and_the_same_nodule_logits(levels: int) -> None:
    torch.manual_seed(0)
    net = NoduleNet(NetworkConfig(width=4, levels=levels, segmentation=True)).eval()
    x = torch.rand(2, 1, 32, 32, 32)
    with torch.no_grad():
        mask = net.segment(x)
        nodule, both = net.forward_with_mask(x)
        plain = net(x)
    assert mask.shape == (2, 1, 32, 32, 32)
    torch.testing.assert_close(both, mask)
    torch.testing.assert_close(nodule, plain)
    assert nodule.shape == (2,)


def test_loss_is_zero_with_grad_without_masks() -> None:
    logits = torch.randn(3, 1, 4, 4, 4, requires_grad=True)
    loss = segmentation_loss(logits, torch.ones(3, 1, 4, 4, 4), torch.zeros(3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()  # type: ignore[no-untyped-call]
    assert logits.grad is not None
    assert float(logits.grad.abs().sum()) == 0.0
    with pytest.raises(ValueError, match="must both be"):
        segmentation_loss(logits, torch.ones(3, 1, 4, 4), torch.ones(3, dtype=torch.bool))


def test_loss_ignores_samples_without_a_mask_and_falls_on_a_toy_sphere() -> None:
    torch.manual_seed(0)
    net = NoduleNet(NetworkConfig(width=4, levels=2, segmentation=True))
    ball = torch.from_numpy(_ball(5.0, spacing_mm=1.0, side=16)).float()[None, None]
    x = torch.cat([ball * 0.7 + 0.1, torch.rand(1, 1, 16, 16, 16) * 0.2])
    target = torch.cat([ball, torch.ones_like(ball)])  # the second "mask" is not a real one
    has_mask = torch.tensor([True, False])
    with torch.no_grad():
        logits = net.segment(x)
        only_first = segmentation_loss(logits[:1], target[:1], has_mask[:1])
        assert segmentation_loss(logits, target, has_mask).item() == pytest.approx(
            only_first.item(), rel=1e-6
        )
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = segmentation_loss(net.segment(x), target, has_mask)
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_the_patch_geometry_is_the_patch_grid() -> None:
    center = (-12.5, 40.0, -201.25)
    geometry = patch_geometry(center, SPEC)
    index = np.indices(SPEC.patch_shape_zyx).reshape(3, -1).T
    np.testing.assert_allclose(
        geometry.index_zyx_to_world(index), patch_grid_xyz(center, SPEC).reshape(-1, 3), atol=1e-9
    )


def test_a_ball_is_measured_within_a_voxel_and_an_empty_map_gives_none() -> None:
    ball = _ball(7.5)  # 15 mm across
    found = measure_patch_mask(np.where(ball, 0.9, 0.1), (1.0, 2.0, 3.0), SPEC)
    assert found is not None
    assert found.mask_zyx.sum() == ball.sum()
    assert found.measurement.mean_diameter_mm == pytest.approx(15.0, abs=SPEC.spacing_mm)
    assert 0.85 < sphericity(found.mask_zyx, found.geometry) <= 1.05
    assert measure_patch_mask(np.zeros((32, 32, 32)), (1.0, 2.0, 3.0), SPEC) is None


def test_the_component_at_the_centre_is_kept_and_a_far_one_is_refused() -> None:
    probability = np.zeros((32, 32, 32), dtype=np.float32)
    probability[13:19, 13:19, 13:19] = 0.8  # at the centre
    probability[0:4, 0:4, 0:4] = 0.9  # a vessel in the corner
    mask = mask_from_probability(probability, 1.25)
    assert mask is not None
    assert mask.sum() == 6**3
    assert not mask[0:4, 0:4, 0:4].any()
    off_centre = np.zeros((32, 32, 32), dtype=np.float32)
    off_centre[0:6, 0:6, 0:6] = 0.9  # ~20 mm from the centre
    assert mask_from_probability(off_centre, 1.25) is None
