"""The search vector's blocks: composition, per-block similarity, the size-less query."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from model.clinical.labels import CHARACTERISTICS
from model.nn.network import part_similarity_matrix
from model.nn.profile import PROFILE_NAMES
from model.nn.search_space import (
    BlockName,
    LearnedProjection,
    SearchSpace,
    Standardizer,
)

RNG = np.random.default_rng(0)
P = len(PROFILE_NAMES)
F = 12


def _unit(n: int, d: int) -> np.ndarray:
    x = RNG.normal(size=(n, d))
    out: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def _space(weights: dict[BlockName, float], with_projection: bool = True) -> SearchSpace:
    scaler = Standardizer(mean=(0.0,) * P, scale=(1.0,) * P)
    d = F + P
    projection = LearnedProjection(
        targets=CHARACTERISTICS,
        input_scaler=Standardizer(mean=(0.0,) * d, scale=(1.0,) * d),
        weights=tuple(tuple(RNG.normal(size=d).tolist()) for _ in CHARACTERISTICS),
        bias=(0.0,) * len(CHARACTERISTICS),
        alpha=10.0,
        trained_on="test",
        n_nodules=20,
    )
    return SearchSpace(
        weights=weights, profile_scaler=scaler, projection=projection if with_projection else None
    )


def test_vectors_are_unit_and_their_product_is_the_weighted_mean_of_block_cosines() -> None:
    space = _space({"features": 2.0, "size": 1.0, "density": 1.0, "shape": 0.5, "learned": 1.5})
    features, profiles = _unit(30, F), RNG.normal(size=(30, P))
    vectors = space.compose(features, profiles)
    assert vectors.shape == (30, space.dim(F))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    parts = space.parts(F)
    assert [p.name for p in parts] == ["features", "size", "density", "shape", "learned"]
    per_block = part_similarity_matrix(vectors[0], vectors, parts)
    shares = np.array([space.shares()[p.name] for p in parts])  # type: ignore[index]
    np.testing.assert_allclose(per_block @ shares, vectors @ vectors[0], atol=1e-5)
    np.testing.assert_allclose(per_block[:, 0], features @ features[0], atol=1e-5)


def test_a_measured_block_falls_with_euclidean_distance() -> None:
    space = _space({"size": 1.0}, with_projection=False)
    z = np.array([[0.0], [0.5], [1.0], [2.0]])
    profiles = np.zeros((4, P))
    profiles[:, 0] = z[:, 0]
    similarity = (
        space.compose(np.zeros((4, F)), profiles) @ space.compose(np.zeros((1, F)), profiles[:1]).T
    )
    assert list(np.argsort(-similarity[:, 0])) == [0, 1, 2, 3]


def test_a_query_without_size_is_searched_by_its_features_alone() -> None:
    space = _space({"features": 1.0, "size": 1.0, "density": 1.0, "learned": 1.0})
    features, profiles = _unit(20, F), RNG.normal(size=(20, P))
    stored = space.compose(features, profiles)
    query = space.compose(features[:1], np.full((1, P), np.nan))[0]
    parts = space.parts(F)
    per_block = part_similarity_matrix(query, stored, parts)
    assert np.all(per_block[:, 1:] == 0.0)
    order = np.argsort(-(stored @ query), kind="stable")
    np.testing.assert_array_equal(order, np.argsort(-(features @ features[0]), kind="stable"))


def test_a_learned_weight_needs_a_projection_and_weights_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="projection"):
        _space({"learned": 1.0}, with_projection=False)
    with pytest.raises(ValidationError, match=">= 0"):
        _space({"features": -1.0, "size": 2.0})
    with pytest.raises(ValidationError, match="at least one"):
        _space({"features": 0.0})


def test_the_space_round_trips_through_json() -> None:
    space = _space({"features": 1.0, "learned": 2.0})
    again = SearchSpace.model_validate_json(space.model_dump_json())
    features, profiles = _unit(5, F), RNG.normal(size=(5, P))
    np.testing.assert_array_equal(
        space.compose(features, profiles), again.compose(features, profiles)
    )
