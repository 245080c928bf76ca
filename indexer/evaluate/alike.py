"""Do the neighbours look alike? Per-query scores beyond the malignancy label.

A radiologist's "similar" means the same density, margin, spiculation and lobulation, not only
the same malignancy class. Three questions, each answered per query so that the bootstrap can
resample patients:

* **Rating differences.** For each of the 8 characteristics the LIDC readers rated besides
  malignancy, ``|query - neighbour|`` of the readers' mean ratings, for the nearest neighbour and
  averaged over the ``k`` nearest (LIDC scale units: lower is better).
* **nDCG@k.** The relevance of a neighbour is ``1 - d``, ``d`` the per-reader nearest-vector
  distance between the two nodules' reads (all 9 ratings, each scaled to [0, 1] by its LIDC
  range): for every reader of one nodule the nearest reader of the other, the Euclidean
  distance divided by its largest possible value (3), averaged; both directions averaged. So two
  nodules whose readers disagree in the same way stay close (as ``markloyman/
  LungNoduleRetrieval`` measures rating distance). The ideal ordering takes the ``k`` most
  relevant nodules the query may be given (its own patient's are left out when the search
  leaves them out); unrated nodules count as relevance 0 on both sides.
* **Recall@1 within diameter tertiles.** The queries are split at the tertiles of their own
  diameters; within each, binary and 4-class hits at 1. Malignancy ratings follow size, so this
  shows what a feature adds beyond it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from indexer.evaluate.scores import Neighbors
from model.clinical.labels import CHARACTERISTICS, RATING_RANGES, Characteristics

F64 = npt.NDArray[np.float64]

#: The characteristics compared one by one: all the readers rated except malignancy.
RATED = CHARACTERISTICS[:-1]
#: Names of the diameter tertiles, smallest first.
TERTILES = ("small", "medium", "large")

_LOW = np.array([RATING_RANGES[name][0] for name in CHARACTERISTICS], dtype=np.float64)
_SPAN = np.array([RATING_RANGES[name][1] for name in CHARACTERISTICS], dtype=np.float64) - _LOW


def reader_matrix(reads: Sequence[Characteristics]) -> F64:
    """The reads of one nodule as a ``(readers, 9)`` array in ``CHARACTERISTICS`` order."""
    if not reads:
        return np.zeros((0, len(CHARACTERISTICS)), dtype=np.float64)
    return np.array([[getattr(r, n) for n in CHARACTERISTICS] for r in reads], dtype=np.float64)


def mean_ratings(reader_ratings: Sequence[F64]) -> F64:
    """``(n, 9)``: each nodule's readers' mean rating; NaN rows for nodules without reads."""
    out = np.full((len(reader_ratings), len(CHARACTERISTICS)), np.nan)
    for i, reads in enumerate(reader_ratings):
        if len(reads):
            out[i] = reads.mean(axis=0)
    return out


@dataclass(frozen=True)
class RatingDifferences:
    """``|query - neighbour|`` of the mean ratings, ``(queries, 8)`` (``RATED`` order).

    NaN where the query or every considered neighbour has no ratings.
    """

    top1: F64
    top_k: F64


def rating_differences(means: F64, neighbors: Neighbors, k: int) -> RatingDifferences:
    """The 8 characteristics' differences to the nearest and (mean) the ``k`` nearest.

    Args:
        means: ``(n, 9)`` mean ratings of the evaluated rows (``mean_ratings``).
        neighbors: the search's neighbours over the same rows.
        k: how many neighbours the second score averages (fewer where fewer exist).
    """
    rated = means[:, : len(RATED)]
    index = neighbors.index[:, :k]
    picked = rated[np.clip(index, 0, None)]  # (n, k, 8)
    picked[index < 0] = np.nan
    diff = np.abs(picked - rated[:, None, :])
    with warnings.catch_warnings():
        # An all-NaN row (an unrated query) is a NaN score, not a warning.
        warnings.simplefilter("ignore", RuntimeWarning)
        top_k = np.nanmean(diff, axis=1)
    return RatingDifferences(top1=diff[:, 0, :], top_k=top_k)


def reader_distance(a: F64, b: F64) -> float:
    """Per-reader nearest-vector distance in [0, 1] of two nodules' reads (module docstring).

    NaN when either nodule has no reads.
    """
    if not len(a) or not len(b):
        return float("nan")
    sa, sb = (a - _LOW) / _SPAN, (b - _LOW) / _SPAN
    pair = np.linalg.norm(sa[:, None, :] - sb[None, :, :], axis=2) / np.sqrt(sa.shape[1])
    return float(0.5 * (pair.min(axis=1).mean() + pair.min(axis=0).mean()))


def relevance_matrix(reader_ratings: Sequence[F64]) -> F64:
    """``(n, n)`` relevance ``1 - reader_distance``; NaN where either nodule is unrated.

    Reads are padded to the most readers any nodule has (NaN), so each row is one array
    operation rather than n calls of ``reader_distance``.
    """
    n = len(reader_ratings)
    width = max((len(r) for r in reader_ratings), default=0)
    if n == 0 or width == 0:
        return np.full((n, n), np.nan)
    scaled = np.full((n, width, len(CHARACTERISTICS)), np.nan)
    for i, reads in enumerate(reader_ratings):
        if len(reads):
            scaled[i, : len(reads)] = (reads - _LOW) / _SPAN
    out = np.empty((n, n))
    with warnings.catch_warnings():
        # Padding rows are NaN: nanmin / nanmean over them warn for unrated nodules only.
        warnings.simplefilter("ignore", RuntimeWarning)
        for i in range(n):
            # (width of i, n, width): reader of i -> every reader of every nodule.
            pair = np.linalg.norm(scaled[i][:, None, None, :] - scaled[None], axis=3)
            pair = np.where(
                np.isnan(scaled[i][:, None, None, 0]) | np.isnan(scaled[None, :, :, 0]),
                np.nan,
                pair,
            )
            pair /= np.sqrt(len(CHARACTERISTICS))
            forward = np.nanmean(np.nanmin(pair, axis=2), axis=0)  # i's readers to j's nearest
            backward = np.nanmean(np.nanmin(pair, axis=0), axis=1)  # j's readers to i's nearest
            out[i] = 1.0 - 0.5 * (forward + backward)
    return out


def ndcg(
    relevance: F64,
    neighbors: Neighbors,
    k: int,
    patient_ids: Sequence[str | None] | None = None,
) -> F64:
    """Per-query nDCG@k of a search (module docstring); NaN for unrated queries.

    Args:
        relevance: ``(n, n)`` over the evaluated rows (``relevance_matrix``).
        neighbors: the search's neighbours.
        k: the cut-off.
        patient_ids: when the search left the query's own patient out, the same patients, so
            the ideal ordering leaves them out too.
    """
    n = relevance.shape[0]
    gains = np.nan_to_num(relevance, nan=0.0)
    allowed = ~np.eye(n, dtype=bool)
    if patient_ids is not None:
        ids = np.array([p if p is not None else f"\0{i}" for i, p in enumerate(patient_ids)])
        allowed &= ids[:, None] != ids[None, :]
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    index = neighbors.index[:, :k]
    got = np.where(index >= 0, np.take_along_axis(gains, np.clip(index, 0, None), axis=1), 0.0)
    dcg = (got * discount[: got.shape[1]]).sum(axis=1)
    best = -np.sort(-np.where(allowed, gains, -np.inf), axis=1)[:, :k]
    ideal = (np.where(np.isfinite(best), best, 0.0) * discount[: best.shape[1]]).sum(axis=1)
    rated = ~np.isnan(np.diag(relevance))
    out = np.divide(dcg, ideal, out=np.full(n, np.nan), where=(ideal > 0) & rated)
    return np.where(rated, out, np.nan)


def diameter_tertiles(
    diameters_mm: npt.ArrayLike,
) -> tuple[tuple[float, float], npt.NDArray[np.int64]]:
    """The two cut-points (mm) of the diameters' tertiles and each row's tertile (0, 1, 2).

    A row at a cut-point goes to the tertile above it.
    """
    d = np.asarray(diameters_mm, dtype=np.float64).reshape(-1)
    if not len(d):
        return (float("nan"), float("nan")), np.zeros(0, dtype=np.int64)
    low, high = (float(v) for v in np.quantile(d, [1.0 / 3.0, 2.0 / 3.0]))
    return (low, high), np.searchsorted(np.array([low, high]), d, side="right").astype(np.int64)


@dataclass(frozen=True)
class RatedRows:
    """What the "looks alike" scores need of the evaluated rows, computed once per evaluation."""

    means: F64
    """``(n, 9)`` mean ratings (NaN rows: unrated)."""
    relevance: F64
    """``(n, n)`` per-reader relevance."""
    tertile_edges_mm: tuple[float, float]
    tertile: npt.NDArray[np.int64]
    """Each row's diameter tertile (0 small, 1 medium, 2 large)."""

    @classmethod
    def of(cls, reader_ratings: Sequence[F64], diameters_mm: npt.ArrayLike) -> RatedRows:
        """From each row's reads (``(readers, 9)``) and diameter."""
        edges, tertile = diameter_tertiles(diameters_mm)
        return cls(mean_ratings(reader_ratings), relevance_matrix(reader_ratings), edges, tertile)

    @property
    def n_rated(self) -> int:
        """Rows with ratings."""
        return int((~np.isnan(self.means[:, 0])).sum())


@dataclass(frozen=True)
class AlikeScores:
    """Per-query "looks alike" scores of one search."""

    differences: RatingDifferences
    ndcg: dict[int, F64]
    """k -> ``(n,)`` nDCG@k (NaN: unrated query)."""

    @property
    def mean_difference_top1(self) -> F64:
        """``(n,)``: each query's top-1 rating difference averaged over the 8 characteristics."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.asarray(np.nanmean(self.differences.top1, axis=1), dtype=np.float64)


def alike_scores(
    rated: RatedRows,
    neighbors: Neighbors,
    k: int,
    ks: Sequence[int],
    patient_ids: Sequence[str | None] | None,
) -> AlikeScores:
    """Rating differences (nearest and ``k`` nearest) and nDCG at each of ``ks``."""
    return AlikeScores(
        differences=rating_differences(rated.means, neighbors, k),
        ndcg={c: ndcg(rated.relevance, neighbors, c, patient_ids) for c in ks},
    )


def nan_mean(values: npt.ArrayLike) -> float:
    """The mean of the finite entries; NaN when there are none (no warning)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")
