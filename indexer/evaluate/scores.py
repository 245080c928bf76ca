"""Retrieval metrics of the paper's Table 1, on plain arrays (no catalogue, no files).

Leave-one-out: every labelled nodule queries all the other labelled nodules by cosine similarity.
Recall@k is the share of queries with at least one of the k nearest neighbours carrying the
query's label (the usual metric-learning Recall@K, which rises with k as the paper's table does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from indexer.train.froc import roc_auc
from model.clinical.vote import majority, malignant_probability

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Neighbors:
    """Leave-one-out neighbours: ``index[q, j]`` is the j-th nearest of query q (-1: none left)."""

    index: I64
    """``(n, k)`` rows into the evaluated set, nearest first."""
    similarity: F64
    """``(n, k)`` cosine similarity; -inf where ``index`` is -1."""


def normalise(vectors: npt.ArrayLike) -> F64:
    """Rows scaled to unit length (zero rows stay zero)."""
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms > 0, norms, 1.0)


def loo_neighbors(
    vectors: npt.ArrayLike, k: int, patient_ids: Sequence[str | None] | None = None
) -> Neighbors:
    """The ``k`` most similar other rows of each row (exact cosine search).

    Args:
        vectors: ``(n, d)`` embeddings (normalised here).
        k: neighbours per query.
        patient_ids: when given, rows of the query's own patient are excluded too. Unknown
            patients (None) never match one another.
    """
    v = normalise(vectors)
    return _top_k(v @ v.T, k, patient_ids)


def loo_neighbors_of_queries(
    queries: npt.ArrayLike,
    catalogue: npt.ArrayLike,
    k: int,
    patient_ids: Sequence[str | None] | None = None,
) -> Neighbors:
    """Leave-one-out search where row i's query vector differs from its catalogue vector.

    Row i of ``queries`` (e.g. its vector with an estimated size) searches the rows of
    ``catalogue`` (the stored vectors, recorded sizes), never row i itself (cosine).
    """
    sims = normalise(queries) @ normalise(catalogue).T
    return _top_k(sims, k, patient_ids)


def loo_neighbors_by_size(
    diameters_mm: npt.ArrayLike, k: int, patient_ids: Sequence[str | None] | None = None
) -> Neighbors:
    """The ``k`` other rows nearest in diameter: the size-only baseline.

    Similarity is ``1 / (1 + |difference| / 1 mm)`` (1 for equal sizes, positive, so the
    service's similarity-weighted vote applies unchanged).
    """
    d = np.asarray(diameters_mm, dtype=np.float64).reshape(-1)
    return _top_k(1.0 / (1.0 + np.abs(d[:, None] - d[None, :])), k, patient_ids)


def loo_neighbors_by_size_and_vectors(
    vectors: npt.ArrayLike,
    diameters_mm: npt.ArrayLike,
    k: int,
    patient_ids: Sequence[str | None] | None = None,
) -> Neighbors:
    """Neighbours by the mean of the cosine similarity and the size similarity.

    Both lie in [-1, 1] and (0, 1]; equal weights make "looks alike and is as large" the
    baseline an image feature must beat once size is known.
    """
    v = normalise(vectors)
    d = np.asarray(diameters_mm, dtype=np.float64).reshape(-1)
    size = 1.0 / (1.0 + np.abs(d[:, None] - d[None, :]))
    return _top_k(0.5 * (v @ v.T) + 0.5 * size, k, patient_ids)


def loo_neighbors_by_measurements(
    features: npt.ArrayLike, k: int, patient_ids: Sequence[str | None] | None = None
) -> Neighbors:
    """The ``k`` other rows nearest by a few measured numbers (diameter, density, ...).

    Each column is z-scored over the rows (a constant column counts for nothing); nearest by
    Euclidean distance, similarity ``1 / (1 + distance)`` (positive, so the vote applies). A
    missing value (NaN: no mask was found) sits at its column's mean, so it neither attracts
    nor repels.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    known = ~np.isnan(x)
    count = known.sum(axis=0)
    mean = np.where(known, x, 0.0).sum(axis=0) / np.maximum(count, 1)
    spread = np.sqrt(np.where(known, (x - mean) ** 2, 0.0).sum(axis=0) / np.maximum(count, 1))
    z = np.where(known, (x - mean) / np.where(spread > 0, spread, 1.0), 0.0)
    distance = np.linalg.norm(z[:, None, :] - z[None, :, :], axis=2)
    return _top_k(1.0 / (1.0 + distance), k, patient_ids)


def hits_at_1(labels: npt.ArrayLike, neighbors: Neighbors) -> npt.NDArray[np.bool_]:
    """Per query: does its nearest neighbour have its label (NaN labels never hit)."""
    y = np.asarray(labels, dtype=np.float64)
    return np.asarray(neighbor_labels(y, neighbors)[:, 0] == y)


def _top_k(sims: F64, k: int, patient_ids: Sequence[str | None] | None) -> Neighbors:
    """Best ``k`` columns of each row of a similarity matrix, never the row itself.

    With ``patient_ids``, columns of the row's own patient are excluded too.
    """
    sims = np.array(sims, dtype=np.float64)
    n = sims.shape[0]
    np.fill_diagonal(sims, -np.inf)
    if patient_ids is not None:
        if len(patient_ids) != n:
            raise ValueError(f"{len(patient_ids)} patient ids for {n} vectors")
        ids = np.array([p if p is not None else f"\0{i}" for i, p in enumerate(patient_ids)])
        sims[ids[:, None] == ids[None, :]] = -np.inf
    k_eff = min(k, max(n - 1, 0))
    # A stable sort on (-similarity) keeps ties in row order: results do not depend on numpy's
    # partition algorithm.
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k_eff]
    top = np.take_along_axis(sims, order, axis=1)
    index = np.where(np.isfinite(top), order, -1).astype(np.int64)
    if k_eff < k:
        index = np.pad(index, ((0, 0), (0, k - k_eff)), constant_values=-1)
        top = np.pad(top, ((0, 0), (0, k - k_eff)), constant_values=-np.inf)
    return Neighbors(index=index, similarity=top)


def neighbor_labels(labels: npt.ArrayLike, neighbors: Neighbors) -> F64:
    """``(n, k)`` labels of the neighbours; NaN where there is no neighbour."""
    y = np.asarray(labels, dtype=np.float64)
    picked = y[np.clip(neighbors.index, 0, None)]
    return np.where(neighbors.index >= 0, picked, np.nan)


@dataclass(frozen=True)
class Hits:
    """Hits out of queries, as the paper prints them."""

    hits: int
    queries: int

    @property
    def value(self) -> float:
        """Hits / queries (NaN without queries)."""
        return self.hits / self.queries if self.queries else float("nan")


def recall_at_k(labels: npt.ArrayLike, neighbors: Neighbors, ks: Sequence[int]) -> dict[int, Hits]:
    """Recall@k for each k: a query hits when one of its k nearest has its label."""
    y = np.asarray(labels, dtype=np.float64)
    same = neighbor_labels(y, neighbors) == y[:, None]
    return {k: Hits(int(same[:, :k].any(axis=1).sum()), len(y)) for k in ks}


@dataclass(frozen=True)
class VoteScores:
    """kNN vote of each query: weighted malignant probability and majority label."""

    probability: F64
    majority: F64


def knn_vote(labels_binary: npt.ArrayLike, neighbors: Neighbors, k: int) -> VoteScores:
    """The service's vote (``model.clinical.vote``) over each query's k nearest neighbours."""
    neighbor_y = neighbor_labels(labels_binary, neighbors)[:, :k]
    sims = np.where(neighbors.index[:, :k] >= 0, neighbors.similarity[:, :k], 0.0)
    probability = malignant_probability(sims, neighbor_y)
    return VoteScores(probability=probability, majority=majority(neighbor_y, probability))


def vote_accuracy(labels_binary: npt.ArrayLike, votes: VoteScores) -> float:
    """Share of queries whose majority vote equals their label (no vote counts as wrong)."""
    y = np.asarray(labels_binary, dtype=np.float64)
    return float(np.mean(votes.majority == y)) if len(y) else float("nan")


def vote_auc(labels_binary: npt.ArrayLike, votes: VoteScores) -> float:
    """ROC AUC of the weighted probability (a query without a vote scores 0.5)."""
    probability = np.where(np.isnan(votes.probability), 0.5, votes.probability)
    return roc_auc(np.asarray(labels_binary), probability)


@dataclass(frozen=True)
class Interval:
    """A value with its bootstrap confidence interval."""

    value: float
    low: float
    high: float


def bootstrap(
    statistic: Callable[[I64], float],
    n: int,
    *,
    groups: Sequence[str | None] | None = None,
    replicates: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap: ``statistic(rows)`` on resampled query rows.

    With ``groups`` (each row's patient) whole patients are resampled, with replacement, and
    each drawn patient brings all its rows: a patient's nodules are not independent queries
    (same scanner, same readers), so resampling rows alone makes the interval too narrow.
    Unknown patients (None) are their own group. Replicates where the statistic is undefined
    (NaN, e.g. an AUC of one class) are dropped.
    """
    value = statistic(np.arange(n, dtype=np.int64))
    if n == 0:
        return Interval(value, float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    if groups is None:
        draws = np.array([statistic(rng.integers(0, n, size=n)) for _ in range(replicates)])
    else:
        members = patient_groups(groups)
        draws = np.array(
            [
                statistic(
                    np.concatenate(
                        [members[g] for g in rng.integers(0, len(members), len(members))]
                    )
                )
                for _ in range(replicates)
            ]
        )
    draws = draws[~np.isnan(draws)]
    if draws.size == 0:
        return Interval(value, float("nan"), float("nan"))
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(draws, [tail, 100.0 - tail])
    return Interval(value, float(low), float(high))


def patient_groups(groups: Sequence[str | None]) -> list[I64]:
    """The rows of each patient (first-seen order); an unknown patient's row stands alone."""
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g if g is not None else f"\0{i}", []).append(i)
    return [np.array(rows, dtype=np.int64) for rows in members.values()]
