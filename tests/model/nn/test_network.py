"""The FP-reduction network, its card and checkpoint, the embedder and the loss."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.nn.card import CardError, read_card
from model.nn.checkpoint import load_model, save_model
from model.nn.embedder import Embedder, EmbeddingInputError
from model.nn.loss import hard_mining_loss
from model.nn.network import (
    NetworkConfig,
    NoduleNet,
    _central,
    embedding_parts,
    part_similarity_matrix,
)
from model.preprocessing import PatchSpec

SPEC = PatchSpec(patch_shape_zyx=(16, 16, 16), spacing_mm=2.0)
CONFIG = NetworkConfig(width=4, levels=3)


def _trained_like(seed: int = 0, config: NetworkConfig = CONFIG) -> NoduleNet:
    """A network whose batch-norm statistics are not the identity (as after training)."""
    torch.manual_seed(seed)
    net = NoduleNet(config)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(8, 1, 16, 16, 16))
    return net.eval()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    save_model(tmp_path / "m", _trained_like(), SPEC, code_version="test")
    return tmp_path / "m"


def test_shapes() -> None:
    net = _trained_like()
    x = torch.rand(5, 1, 16, 16, 16)
    assert net(x).shape == (5,)
    assert net.forward_features(x).shape == (5, 4 * 2**3, 2, 2, 2)  # the bottleneck
    assert net.score_map(x).shape == (5, 1, 8, 8, 8)
    e = net.embed(x)
    assert e.shape == (5, CONFIG.embedding_dim)
    assert e.dtype == torch.float32
    np.testing.assert_allclose(e.norm(dim=1).detach().numpy(), 1.0, atol=1e-6)


def test_embed_is_deterministic_and_per_sample() -> None:
    net = _trained_like()
    x = torch.rand(4, 1, 16, 16, 16)
    with torch.no_grad():
        a, b = net.embed(x), net.embed(x)
        single = net.embed(x[2:3])
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a[2:3], single, rtol=0, atol=1e-6)


def test_embedding_sizes_and_the_central_cube() -> None:
    assert NetworkConfig(width=12, levels=3, embedding_pool="avg").embedding_dim == 96
    assert NetworkConfig(width=12, levels=3).embedding_dim == 12 + 24 + 48 + 96
    ramp = torch.arange(32.0).reshape(1, 1, 32, 1, 1).expand(1, 1, 32, 4, 5)
    cube = _central(ramp, 0.25)
    # 32 -> voxels 12..19 (8 = a quarter), 4 -> 1..2 (1 rounds up to 2 to stay centred), 5 -> 2.
    assert tuple(cube.shape[2:]) == (8, 2, 1)
    assert cube[0, 0, :, 0, 0].tolist() == [float(v) for v in range(12, 20)]


@pytest.mark.parametrize("pool", ["center-multiscale", "avg"])
def test_embedder_matches_the_network_and_ignores_batch_size(tmp_path: Path, pool: str) -> None:
    config = NetworkConfig(width=4, levels=3, embedding_pool=pool)
    model_dir = tmp_path / "m"
    save_model(model_dir, _trained_like(config=config), SPEC, code_version="test")
    patches = np.random.default_rng(0).random((7, 16, 16, 16), dtype=np.float32)
    network, _ = load_model(model_dir)
    with torch.no_grad():
        reference = network.embed(torch.from_numpy(patches)[:, None]).numpy()
    for batch_size in (1, 3, 64):
        vectors = Embedder.from_model_dir(model_dir, "cpu", batch_size=batch_size).embed_patches(
            patches
        )
        assert vectors.dtype == np.float32
        assert vectors.shape == (7, config.embedding_dim)
        np.testing.assert_allclose(vectors, reference, atol=1e-5)
    with_channel = Embedder.from_model_dir(model_dir, "cpu").embed_patches(patches[:, None])
    np.testing.assert_allclose(with_channel, reference, atol=1e-5)


def test_embedder_refuses_bad_patches(model_dir: Path) -> None:
    embedder = Embedder.from_model_dir(model_dir, "cpu")
    with pytest.raises(EmbeddingInputError, match="shape"):
        embedder.embed_patches(np.zeros((2, 16, 16, 8), np.float32))
    bad = np.zeros((1, 16, 16, 16), np.float32)
    bad[0, 3, 3, 3] = np.nan
    with pytest.raises(EmbeddingInputError, match="NaN"):
        embedder.embed_patches(bad)


def test_checkpoint_round_trip(model_dir: Path) -> None:
    card = read_card(model_dir)
    assert card.embedding_dim == CONFIG.embedding_dim
    assert card.preprocessing == SPEC
    network, loaded = load_model(model_dir)
    assert loaded == card
    assert not network.training
    x = torch.rand(2, 1, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(network(x), _trained_like()(x))


def test_weights_that_do_not_fit_the_card_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other"
    save_model(other, _trained_like(config=NetworkConfig(width=8)), SPEC, code_version="t")
    target = tmp_path / "target"
    save_model(target, _trained_like(), SPEC, code_version="t")
    (target / "weights.pt").write_bytes((other / "weights.pt").read_bytes())
    with pytest.raises(CardError, match=r"not the ones card\.json describes"):
        load_model(target)
    # Even with hashes made consistent, a width-8 state dict does not fit a width-4 card.
    card = json.loads((other / "card.json").read_text())
    card["arch"]["width"] = 4
    card["embedding_dim"] = NetworkConfig(width=4, levels=3).embedding_dim
    from model.nn.card import compute_fingerprint

    card["fingerprint"] = compute_fingerprint(
        card["weights_sha256"], SPEC, NetworkConfig(width=4, levels=3)
    )
    (other / "card.json").write_text(json.dumps(card))
    with pytest.raises(CardError, match="do not fit the card's architecture"):
        load_model(other)


def test_card_with_another_preprocessing_is_detected(model_dir: Path) -> None:
    card = json.loads((model_dir / "card.json").read_text())
    card["preprocessing"]["spacing_mm"] = 1.0
    (model_dir / "card.json").write_text(json.dumps(card))
    with pytest.raises(CardError, match="preprocessing or architecture differs"):
        read_card(model_dir)
    with pytest.raises(CardError, match="preprocessing or architecture differs"):
        Embedder.from_model_dir(model_dir, "cpu")


def test_card_validates_patch_shape_against_depth(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="divisible"):
        save_model(
            tmp_path, _trained_like(), PatchSpec(patch_shape_zyx=(12, 16, 16)), code_version="t"
        )


def test_missing_model_files(tmp_path: Path) -> None:
    with pytest.raises(CardError, match=r"no card\.json"):
        load_model(tmp_path)


def test_hard_mining_keeps_positives_and_hardest_negatives() -> None:
    logits = torch.tensor([2.0, -1.0, -5.0, 3.0, 0.5, -4.0], requires_grad=True)
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    loss, used = hard_mining_loss(logits, labels, negative_fraction=0.5)
    # Negatives ranked by loss: 3.0 (hardest), 0.5, -4.0, -5.0 -> the top 2 are kept.
    assert used.tolist() == [True, True, False, True, True, False]
    loss.backward()  # type: ignore[no-untyped-call]
    assert logits.grad is not None
    assert logits.grad[2] == 0
    assert logits.grad[5] == 0
    assert logits.grad[3] > 0
    expected = F.binary_cross_entropy_with_logits(logits[used].detach(), labels[used])
    assert loss.item() == pytest.approx(expected.item())
    full, used_all = hard_mining_loss(logits.detach(), labels, negative_fraction=1.0)
    assert bool(used_all.all())
    assert full.item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits.detach(), labels).item()
    )


def test_cards_written_before_center_pooling_still_load(tmp_path: Path) -> None:
    """A card from before ``embedding_center_fraction`` existed keeps its fingerprint."""
    config = NetworkConfig(width=4, levels=3, embedding_pool="avg")
    save_model(tmp_path / "m", _trained_like(config=config), SPEC, code_version="t")
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    del card["arch"]["embedding_center_fraction"]
    (tmp_path / "m" / "card.json").write_text(json.dumps(card))
    network, loaded = load_model(tmp_path / "m")
    assert loaded.arch.embedding_pool == "avg"
    assert network.embed(torch.rand(2, 1, 16, 16, 16)).shape == (2, 32)


def _ball(radius_voxels: float, side: int = 16) -> torch.Tensor:
    axes = torch.arange(side, dtype=torch.float32) - (side - 1) / 2.0
    zz, yy, xx = torch.meshgrid(axes, axes, axes, indexing="ij")
    inside = (zz**2 + yy**2 + xx**2).sqrt() <= radius_voxels
    return torch.where(inside, 0.8, 0.1)[None, None]


def test_size_profile_follows_the_extent_of_a_ball() -> None:
    from model.nn.network import shell_index, size_profile

    index = shell_index((16, 16, 16), 8)
    assert index.shape == (16, 16, 16)
    assert int(index.min()) == 0
    assert int(index.max()) == 8  # the corners belong to no shell
    small, large = size_profile(_ball(2.5), 8)[0], size_profile(_ball(5.5), 8)[0]
    assert small.shape == (8,)
    assert torch.linalg.norm(small).item() == pytest.approx(1.0, abs=1e-6)
    # Bright out to shell 2 for the small ball, shell 5 for the large one.
    assert small[1] > 3 * small[4]
    assert large[4] > 3 * large[7]
    assert torch.dot(small, large) < torch.dot(large, size_profile(_ball(5.0), 8)[0])


def test_the_search_vector_mixes_features_and_profile_by_weight(tmp_path: Path) -> None:
    config = NetworkConfig(width=4, levels=3, size_profile_weight=0.25, size_profile_shells=8)
    assert config.embedding_dim == config.feature_dim + 8
    torch.manual_seed(0)
    network = NoduleNet(config).eval()
    plain = NoduleNet(config.model_copy(update={"size_profile_weight": 0.0})).eval()
    plain.load_state_dict(network.state_dict())
    x = torch.cat([_ball(2.5), _ball(5.5)])
    with torch.no_grad():
        v, f = network.embed(x), plain.embed(x)
    assert torch.linalg.norm(v, dim=1).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    from model.nn.network import size_profile

    p = size_profile(x, 8)
    expected = 0.75 * torch.dot(f[0], f[1]) + 0.25 * torch.dot(p[0], p[1])
    assert torch.dot(v[0], v[1]).item() == pytest.approx(expected.item(), abs=1e-5)
    # The service's embedder (folded, oneDNN path) gives the same vectors.
    card = save_model(tmp_path, network, SPEC, code_version="t")
    fast = Embedder(network, card, "cpu").embed_patches(x[:, 0].numpy())
    np.testing.assert_allclose(fast, v.numpy(), atol=1e-4)


def test_cards_written_before_the_size_profile_still_load(tmp_path: Path) -> None:
    save_model(tmp_path / "m", _trained_like(), SPEC, code_version="t")
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    del card["arch"]["size_profile_weight"]
    del card["arch"]["size_profile_shells"]
    (tmp_path / "m" / "card.json").write_text(json.dumps(card))
    assert load_model(tmp_path / "m")[1].arch.size_profile_weight == 0.0


def test_part_similarities_per_encoder_level() -> None:
    config = NetworkConfig(width=4, levels=2)
    parts = embedding_parts(config)
    assert [(p.start, p.stop) for p in parts] == [(0, 4), (4, 12), (12, 28)]
    query = np.zeros(28, dtype=np.float32)
    query[0], query[4], query[12] = 1.0, 1.0, 1.0
    stored = np.zeros((2, 28), dtype=np.float32)
    stored[0, 0], stored[0, 5], stored[0, 12] = 2.0, 1.0, -3.0  # same, orthogonal, opposite
    sims = part_similarity_matrix(query, stored, parts)
    np.testing.assert_allclose(sims[0], [1.0, 0.0, -1.0])
    np.testing.assert_allclose(sims[1], [0.0, 0.0, 0.0])  # an all-zero vector: 0, not NaN
    with pytest.raises(ValueError, match="tile"):
        part_similarity_matrix(query, stored, [parts[0], parts[2]])
