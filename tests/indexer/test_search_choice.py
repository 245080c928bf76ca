"""Fitting the learned projection and choosing the blocks by nested cross-validation."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.search.choose import Candidate, SelectionData, candidate_grid, choose_nested
from indexer.search.fit import FitError, fit_projection, fit_space
from model.clinical.labels import CHARACTERISTICS
from model.nn.profile import PROFILE_NAMES

P = len(PROFILE_NAMES)


def _data(seed: int = 0, n: int = 150, folds: int = 4) -> SelectionData:
    """Labels follow the size (profile column 0); the features are noise."""
    rng = np.random.default_rng(seed)
    profiles = rng.normal(size=(n, P))
    size = profiles[:, 0]
    targets = np.column_stack([size + rng.normal(scale=0.3, size=n) for _ in CHARACTERISTICS])
    features = [rng.normal(size=(n, 8)) for _ in range(folds)]
    features = [f / np.linalg.norm(f, axis=1, keepdims=True) for f in features]
    binary = (size > 0).astype(float)
    four = np.digitize(size, [-0.7, 0.0, 0.7]).astype(float)
    return SelectionData(
        features=[f.astype(np.float32) for f in features],
        profiles=profiles,
        targets=targets,
        fold=np.arange(n) % folds,
        queries=np.arange(n),
        label_binary=binary,
        label_4class=four,
        patients=[f"p{i // 2}" for i in range(n)],
    )


def test_the_projection_learns_the_ratings_from_the_inputs() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 6))
    truth = rng.normal(size=(6, len(CHARACTERISTICS)))
    y = x @ truth + 3.0
    projection = fit_projection(x[:, :3], x[:, 3:], y, alpha=1.0, trained_on="test")
    predicted = projection.predict(x)
    standardised = (y - y.mean(axis=0)) / y.std(axis=0)
    assert np.corrcoef(predicted[:, 0], standardised[:, 0])[0, 1] > 0.99
    assert projection.n_nodules == 200


def test_too_few_rated_nodules_cannot_fit() -> None:
    x = np.ones((5, 3))
    with pytest.raises(FitError, match="at least 10"):
        fit_projection(x, x, np.ones((5, len(CHARACTERISTICS))), alpha=1.0, trained_on="t")
    with pytest.raises(FitError, match="profile"):
        fit_space({"size": 1.0}, x, np.full((5, P), np.nan), x, alpha=1.0, trained_on="t")


def test_the_choice_finds_the_block_that_carries_the_labels() -> None:
    choice = choose_nested(_data(), candidate_grid((0.0, 1.0), (10.0,)))
    for chosen in choice.chosen:
        weights = chosen.as_dict()
        assert weights.get("size", 0.0) + weights.get("learned", 0.0) > 0
        assert "features" not in weights or len(weights) > 1
    assert choice.final in choice.candidates


def test_an_outer_folds_labels_never_take_part_in_its_own_choice() -> None:
    """Scrambling fold 0's labels and ratings changes nothing chosen for fold 0."""
    data = _data()
    grid = candidate_grid((0.0, 1.0), (10.0,))
    before = choose_nested(data, grid)
    rng = np.random.default_rng(5)
    in_fold0 = data.fold == 0
    binary, four, targets = data.label_binary.copy(), data.label_4class.copy(), data.targets.copy()
    binary[in_fold0] = rng.integers(0, 2, in_fold0.sum())
    four[in_fold0] = rng.choice([1.0, 2.0, 4.0, 5.0], in_fold0.sum())
    targets[in_fold0] = rng.normal(size=(in_fold0.sum(), len(CHARACTERISTICS)))
    scrambled = SelectionData(
        data.features, data.profiles, targets, data.fold, data.queries, binary, four, data.patients
    )
    after = choose_nested(scrambled, grid)
    assert after.chosen[0] == before.chosen[0]
    np.testing.assert_array_equal(after.inner_hits[0], before.inner_hits[0])
    assert not np.array_equal(after.plain_hits, before.plain_hits)


def test_candidate_names_and_grid() -> None:
    grid = candidate_grid()
    assert len(grid) == 80 + 162 * 3
    assert Candidate((1.0, 0.0, 0.0, 0.0, 2.0), 100.0).name == "features 1, learned 2 (alpha 100)"
    assert Candidate((0.0, 1.0, 0.0, 0.0, 0.0)).name == "size 1"
