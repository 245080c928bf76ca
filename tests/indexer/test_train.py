"""Training of the FP-reduction network on a tiny synthetic set."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from indexer.cli import main
from indexer.data.luna import LunaPoint
from indexer.train import trainer as trainer_module
from indexer.train.curriculum import Curriculum, OnlineFilter, augment, difficulty_ranks
from indexer.train.froc import froc, roc_auc
from indexer.train.samples import data_fingerprint
from indexer.train.trainer import TrainConfig, TrainData, epoch_pool, prepare_data, train
from model.nn.checkpoint import load_model
from model.nn.embedder import Embedder
from model.nn.network import NetworkConfig, NoduleNet
from model.preprocessing import PatchSpec

TINY = TrainConfig(
    epochs=3,
    batch_size=16,
    samples_per_epoch=320,
    width=4,
    levels=3,
    patch=PatchSpec(patch_shape_zyx=(16, 16, 16), spacing_mm=2.5),
    margin=1,
    lr=1e-3,
    curriculum_ramp_epochs=2,
)


@pytest.fixture(scope="module")
def tiny_data(synth_set: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainData:
    return prepare_data(
        synth_set,
        TINY,
        val_subsets=None,
        cache_dir=tmp_path_factory.mktemp("cache"),
        fingerprint=data_fingerprint(synth_set),
        progress=False,
    )


def _train_auc(network: NoduleNet, data: TrainData) -> float:
    """AUC of the network (eval mode) over the training samples."""
    x = torch.from_numpy(np.stack([data.cache.crop(i) for i in data.train]))[:, None]
    network.eval()
    with torch.no_grad():
        return roc_auc(data.labels[data.train], network(x).numpy())


def test_split_and_cache(tiny_data: TrainData) -> None:
    assert set(tiny_data.train).isdisjoint(tiny_data.val)
    val_scans = {tiny_data.samples[i].series_uid for i in tiny_data.val}
    assert val_scans.isdisjoint(tiny_data.samples[i].series_uid for i in tiny_data.train)
    assert tiny_data.val_subsets == ("subset2",)
    assert tiny_data.cache.patches.shape[1:] == (18, 18, 18)  # 16 + 2 x margin
    assert tiny_data.cache.crop(0).shape == (16, 16, 16)
    assert tiny_data.labels[tiny_data.train].sum() > 0


@pytest.mark.slow
def test_short_training_lowers_the_loss_and_writes_a_loadable_model(
    tiny_data: TrainData, tmp_path: Path
) -> None:
    # Eight epochs: on the tiny set five lower the loss but may not yet separate the classes.
    # The last epoch's model: the best-validation one may be an early epoch on 5 val nodules.
    config = TINY.model_copy(update={"epochs": 8, "select": "last"})
    torch.manual_seed(config.seed)
    before = _train_auc(NoduleNet(NetworkConfig(width=4, levels=3)), tiny_data)
    card = train(
        config, tiny_data, tmp_path, device_name="cpu", code_version="test", progress=False
    )
    network, loaded = load_model(tmp_path)
    assert loaded.fingerprint == card.fingerprint
    assert card.training is not None
    losses = [h["train_loss"] for h in card.training.history]
    assert losses[-1] < losses[0]
    assert _train_auc(network, tiny_data) > before + 0.1
    assert card.training.froc is not None
    assert len(card.training.history) == config.epochs
    assert card.training.data_fingerprint == tiny_data.fingerprint
    assert (tmp_path / "checkpoints" / "last.pt").is_file()
    vectors = Embedder.from_model_dir(tmp_path, "cpu").embed_patches(
        np.stack([tiny_data.cache.crop(i) for i in range(3)])
    )
    assert vectors.shape == (3, card.embedding_dim)


@pytest.mark.slow
def test_resume_continues_an_interrupted_run(
    tiny_data: TrainData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_validate = trainer_module.validate
    calls = {"n": 0}

    def crash_on_third(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real_validate(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(trainer_module, "validate", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        train(TINY, tiny_data, tmp_path, device_name="cpu", code_version="t", progress=False)
    monkeypatch.setattr(trainer_module, "validate", real_validate)
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 1
    card = train(
        TINY, tiny_data, tmp_path, device_name="cpu", code_version="t", resume=True, progress=False
    )
    assert card.training is not None
    assert [h["epoch"] for h in card.training.history] == [0.0, 1.0, 2.0]


def test_curriculum_admits_hard_samples_later(tiny_data: TrainData) -> None:
    labels = tiny_data.labels
    center = np.array(
        [tiny_data.cache.crop(i)[6:10, 6:10, 6:10].mean() for i in range(len(labels))]
    )
    ranks = difficulty_ranks(center, labels)
    curriculum = Curriculum(start=0.4, ramp_epochs=2)
    online = OnlineFilter(len(labels))
    mask = np.zeros(len(labels), dtype=bool)
    mask[tiny_data.train] = True
    pos0, neg0 = epoch_pool(0, mask, ranks, curriculum, online, labels)
    pos2, neg2 = epoch_pool(2, mask, ranks, curriculum, online, labels)
    assert len(neg0) < len(neg2) == int((mask & (labels == 0)).sum())
    assert len(pos0) < len(pos2)
    # What epoch 0 leaves out are the negatives that look most like nodules (bright centres).
    left_out = np.setdiff1d(neg2, neg0)
    assert center[left_out].min() >= center[neg0].max() - 1e-6


def test_difficulty_ranks_by_class() -> None:
    ranks = difficulty_ranks([0.1, 0.9, 0.5, 0.2, 0.8], [0, 0, 0, 1, 1])
    np.testing.assert_allclose(ranks, [0.0, 1.0, 0.5, 1.0, 0.0])  # faint positive = hard


def test_online_filter_drops_confident_samples_from_later_epochs() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1])
    online = OnlineFilter(6, threshold=0.05, floor=0.25)
    dropped = online.update([0, 1, 2, 3, 4, 5], [0.01, 0.02, 0.5, 0.04, 0.99, 0.6], labels)
    # Confident: negatives 0, 1, 3 and positive 4; the floor keeps at least 1 of 4 negatives and
    # 1 of 2 positives, so all four may go.
    assert dropped == 4
    assert online.dropped.tolist() == [True, True, False, True, True, False]
    mask = np.ones(6, dtype=bool)
    pos, neg = epoch_pool(0, mask, np.zeros(6), Curriculum(1.0, 0), online, labels)
    assert pos.tolist() == [5]
    assert neg.tolist() == [2]
    # The floor: nothing more of the negatives may go.
    assert online.update([2], [0.0], labels) == 0


def test_augment_keeps_content() -> None:
    patch = np.random.default_rng(0).random((8, 8, 8), dtype=np.float32)
    out = augment(patch, np.random.default_rng(1))
    assert out.shape == patch.shape
    assert np.sort(out, axis=None).tolist() == np.sort(patch, axis=None).tolist()


def test_froc_with_known_answer() -> None:
    nodules = [LunaPoint("a", (0.0, 0.0, 0.0), 10.0), LunaPoint("b", (0.0, 0.0, 0.0), 10.0)]
    excluded = [LunaPoint("a", (50.0, 0.0, 0.0), -1.0)]
    candidates = [
        LunaPoint("a", (1.0, 0.0, 0.0)),  # hits nodule a
        LunaPoint("a", (2.0, 0.0, 0.0)),  # hits nodule a again: not an FP
        LunaPoint("a", (50.0, 1.0, 0.0)),  # excluded finding: ignored
        LunaPoint("a", (90.0, 0.0, 0.0)),  # FP
        LunaPoint("b", (30.0, 0.0, 0.0)),  # FP
        LunaPoint("b", (0.0, 3.0, 0.0)),  # hits nodule b
    ]
    scores = [0.9, 0.95, 0.99, 0.8, 0.7, 0.3]
    result = froc(candidates, scores, nodules, ["a", "b"], excluded)
    # Thresholds: 0.95 -> 1 TP, 0 FP; 0.8 -> 1 FP (0.5/scan); 0.7 -> 2 FP (1/scan); 0.3 -> 2 TP.
    assert result.sensitivity == (0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0)
    assert result.cpm == pytest.approx((0.5 * 3 + 1.0 * 4) / 7)
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # The rank form equals scikit-learn's trapezoidal area, ties included.
    rng = np.random.default_rng(3)
    for _ in range(20):
        y = rng.integers(0, 2, size=40)
        tied = np.round(rng.random(40), 1)  # many ties
        assert roc_auc(y, tied) == pytest.approx(roc_auc_score(y, tied), abs=1e-12)
    assert np.isnan(roc_auc([1, 1, 1], [0.2, 0.3, 0.4]))


def test_train_command_reuses_a_matching_model(
    synth_set: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    args = ["train", "--data", str(synth_set), "--out", str(tmp_path / "m"), "--epochs", "1"]
    args += ["--width", "4", "--batch-size", "8", "--samples-per-epoch", "16", "--no-progress"]
    assert main(args) == 0
    assert (tmp_path / "m" / "card.json").is_file()
    with caplog.at_level(logging.INFO):
        assert main(args) == 0
    assert "reusing the model" in caplog.text
    assert main([*args[:-1], "--device", "tpu", "--force"]) == 2


def test_augment_jitters_intensity_and_scale_about_the_center() -> None:
    patch = np.zeros((9, 9, 9), dtype=np.float32)
    patch[4, 4, 4] = 1.0
    patch[2:7, 2:7, 2:7] += 0.5
    shifted = augment(patch, np.random.default_rng(3), intensity_jitter=0.05)
    offset = float(shifted.mean() - patch.mean())
    assert 0 < abs(offset) <= 0.05
    np.testing.assert_allclose(
        np.sort(shifted, axis=None) - offset, np.sort(patch, axis=None), atol=1e-6
    )
    zoomed = augment(patch, np.random.default_rng(3), scale_jitter=0.3)
    assert zoomed.shape == patch.shape
    assert zoomed.dtype == np.float32
    assert zoomed[4, 4, 4] == zoomed.max()  # the centre stays the centre
    assert not np.array_equal(np.sort(zoomed, axis=None), np.sort(patch, axis=None))


def test_fine_tuning_keeps_the_architecture_and_records_its_start(
    synth_set: Path, tmp_path: Path
) -> None:
    base = ["train", "--data", str(synth_set), "--epochs", "1", "--width", "4"]
    base += ["--batch-size", "8", "--samples-per-epoch", "16", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "start")]) == 0
    start = load_model(tmp_path / "start")[1]
    tune = ["--init", str(tmp_path / "start"), "--outside", "edge", "--select", "last"]
    tune += ["--intensity-jitter", "0.02", "--scale-jitter", "0.1", "--lr", "1e-4"]
    args = [*base[:3], "--epochs", "2", *base[5:], "--out", str(tmp_path / "tuned"), *tune]
    assert main(args) == 0
    _, card = load_model(tmp_path / "tuned")
    assert card.arch == start.arch
    assert card.preprocessing == start.preprocessing.model_copy(update={"outside": "edge"})
    assert card.training is not None
    assert card.training.best_epoch == 1  # --select last
    assert card.training.options["init_fingerprint"] == start.fingerprint
    assert card.training.options["scale_jitter"] == 0.1
    data = card.training.data  # the data card
    assert data is not None
    assert data.source == "synth.json"
    assert data.source_sha256 is not None
    assert data.train_positives > 0
    assert data.train_negatives > 0
    assert data.train_patients > 0
    assert data.summary["generator_version"]
    assert main([*args, "--init", str(tmp_path / "missing"), "--force"]) == 2
    # An edge model fine-tuned again without --outside stays an edge model (issue 31).
    again = [*base[:3], "--epochs", "1", *base[5:], "--out", str(tmp_path / "again")]
    assert main([*again, "--init", str(tmp_path / "tuned"), "--select", "last"]) == 0
    assert load_model(tmp_path / "again")[1].preprocessing.outside == "edge"


@pytest.mark.slow
def test_the_mask_branch_learns_the_rendered_masks_beside_fp_reduction(
    tiny_data: TrainData, tmp_path: Path
) -> None:
    """--segmentation-weight: the rendered nodules' masks train a mask branch; the card says so."""
    assert tiny_data.cache.has_mask(next(i for i in tiny_data.train if tiny_data.labels[i]))
    assert not any(tiny_data.cache.has_mask(i) for i in tiny_data.train if not tiny_data.labels[i])
    config = TINY.model_copy(update={"epochs": 5, "segmentation_weight": 1.0})
    card = train(
        config, tiny_data, tmp_path, device_name="cpu", code_version="test", progress=False
    )
    assert card.training is not None
    assert all(0.0 <= h["val_dice"] <= 1.0 for h in card.training.history)
    network, loaded = load_model(tmp_path)
    assert network.config.segmentation
    assert loaded.arch.segmentation
    nodules = [i for i in tiny_data.val if tiny_data.labels[i]]
    x = torch.from_numpy(np.stack([tiny_data.cache.crop(i) for i in nodules]))[:, None]
    truth = np.stack([tiny_data.cache.crop_mask(i) for i in nodules]) > 0.5
    with torch.no_grad():
        logits, mask_logits = network.forward_with_mask(x)
        assert torch.allclose(logits, network(x))  # the mask branch leaves the score alone
    assert mask_logits.shape == x.shape
    # Five tiny epochs do not make a Dice-worthy mask, but the branch already ranks the unseen
    # nodules' voxels above their surroundings (it starts at a flat "no nodule", logit -3).
    assert roc_auc(truth.ravel(), mask_logits[:, 0].numpy().ravel()) > 0.75
    # Fine-tuning it without the branch drops it; the FP-reduction weights carry over.
    plain = TINY.model_copy(update={"epochs": 1, "init_fingerprint": loaded.fingerprint})
    card = train(
        plain,
        tiny_data,
        tmp_path / "plain",
        device_name="cpu",
        code_version="test",
        progress=False,
        init=network,
    )
    assert not card.arch.segmentation


def test_an_edited_nodule_mask_changes_the_data_fingerprint(
    synth_set: Path, tmp_path: Path
) -> None:
    # A copy of the set's tables, scans listed by size, and masks: only the masks change.
    copy = tmp_path / "set"
    shutil.copytree(synth_set, copy)
    before = data_fingerprint(copy)
    assert data_fingerprint(copy) == before  # deterministic
    masks = sorted((copy / "nodule_masks").glob("*.raw"))
    assert masks, "the synthetic set writes nodule masks"
    edited = masks[0]
    data = bytearray(edited.read_bytes())
    data[-1] ^= 1
    edited.write_bytes(bytes(data))
    assert data_fingerprint(copy) != before
