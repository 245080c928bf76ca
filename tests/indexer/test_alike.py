"""The looks-alike metrics (indexer.evaluate.alike) and the patient bootstrap, on hand-made rows."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.evaluate.alike import (
    RATED,
    RatedRows,
    diameter_tertiles,
    mean_ratings,
    ndcg,
    rating_differences,
    reader_distance,
    relevance_matrix,
)
from indexer.evaluate.scores import Neighbors, bootstrap
from model.clinical.labels import CHARACTERISTICS, RATING_RANGES


def _reads(*rows: list[int] | list[float]) -> np.ndarray:
    return np.array(rows, dtype=np.float64).reshape(-1, len(CHARACTERISTICS))


LOWEST = [RATING_RANGES[n][0] for n in CHARACTERISTICS]
HIGHEST = [RATING_RANGES[n][1] for n in CHARACTERISTICS]
MIDDLE = [3, 2, 3, 3, 3, 3, 3, 3, 3]


def test_reader_distance_is_zero_for_the_same_reads_and_one_at_the_extremes() -> None:
    a = _reads(LOWEST, MIDDLE)
    assert reader_distance(a, a) == 0.0
    assert reader_distance(_reads(LOWEST), _reads(HIGHEST)) == pytest.approx(1.0)
    assert reader_distance(a, _reads(HIGHEST)) == pytest.approx(reader_distance(_reads(HIGHEST), a))
    assert np.isnan(reader_distance(a, _reads()))


def test_reader_disagreement_is_kept_where_a_mean_would_lose_it() -> None:
    # Two readers who disagree (lowest / highest) against one reader in the middle: the means
    # are nearly equal, the per-reader distance is not.
    split = _reads(LOWEST, HIGHEST)
    middle = _reads([(lo + hi) / 2 for lo, hi in zip(LOWEST, HIGHEST, strict=True)])
    assert np.allclose(mean_ratings([split])[0], middle[0])
    assert reader_distance(split, middle) == pytest.approx(0.5)
    assert reader_distance(split, _reads(HIGHEST, LOWEST)) == 0.0


def test_relevance_matrix_matches_the_pairwise_distance() -> None:
    rng = np.random.default_rng(3)
    reads = [rng.integers(1, 5, size=(int(rng.integers(0, 4)), 9)).astype(float) for _ in range(9)]
    got = relevance_matrix(reads)
    want = np.array([[1.0 - reader_distance(a, b) for b in reads] for a in reads])
    assert np.allclose(got, want, equal_nan=True)


def test_rating_differences_of_the_nearest_and_the_k_nearest() -> None:
    means = np.array([[1.0] * 9, [2.0] * 9, [4.0] * 9, [np.nan] * 9])
    found = Neighbors(
        index=np.array([[1, 2], [0, 2], [1, 0], [0, 1]]),
        similarity=np.ones((4, 2)),
    )
    diff = rating_differences(means, found, k=2)
    assert diff.top1.shape == (4, len(RATED))
    assert np.allclose(diff.top1[0], 1.0)
    assert np.allclose(diff.top_k[0], 2.0)
    assert np.allclose(diff.top1[2], 2.0)
    assert np.allclose(diff.top_k[2], 2.5)
    assert np.isnan(diff.top1[3]).all()  # an unrated query has no score


def test_ndcg_is_one_for_the_ideal_order_and_lower_otherwise() -> None:
    relevance = np.array(
        [
            [1.0, 0.9, 0.5, 0.1],
            [0.9, 1.0, 0.4, 0.2],
            [0.5, 0.4, 1.0, 0.3],
            [0.1, 0.2, 0.3, 1.0],
        ]
    )
    best = Neighbors(np.array([[1, 2], [0, 2], [0, 1], [2, 1]]), np.ones((4, 2)))
    worst = Neighbors(np.array([[3, 2], [3, 2], [3, 1], [0, 1]]), np.ones((4, 2)))
    assert np.allclose(ndcg(relevance, best, 2), 1.0)
    assert (ndcg(relevance, worst, 2)[:3] < 1.0).all()
    # With rows 0 and 1 one patient, row 0's ideal leaves row 1 out: [2, 3] is then ideal.
    patients = ["p", "p", "q", "r"]
    excluded = Neighbors(np.array([[2, 3], [2, 3], [0, 1], [2, 1]]), np.ones((4, 2)))
    assert ndcg(relevance, excluded, 2, patients)[0] == pytest.approx(1.0)


def test_diameter_tertiles_split_the_queries_in_three() -> None:
    (low, high), tertile = diameter_tertiles(np.arange(1.0, 10.0))
    assert low < high
    assert np.bincount(tertile).tolist() == [3, 3, 3]
    rated = RatedRows.of([_reads(MIDDLE), _reads()], [4.0, 6.0])
    assert rated.n_rated == 1


def test_patient_bootstrap_is_wider_when_a_patients_nodules_agree() -> None:
    # Two patients with 50 nodules each, all hits for one and misses for the other: resampling
    # rows pretends 100 independent queries, resampling patients knows there are two.
    hits = np.array([1.0] * 50 + [0.0] * 50)
    groups = ["a"] * 50 + ["b"] * 50

    def mean(sample: np.ndarray) -> float:
        return float(hits[sample].mean())

    rows = bootstrap(mean, 100, replicates=400)
    patients = bootstrap(mean, 100, groups=groups, replicates=400)
    assert rows.value == patients.value == 0.5
    assert rows.high - rows.low < 0.3
    assert patients.low == 0.0
    assert patients.high == 1.0
