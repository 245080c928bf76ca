"""The "close match" threshold of a catalogue version, chosen from the version's own vectors.

Rule: for every catalogue nodule (at most ``MAX_QUERIES`` of them, a fixed random sample beyond
that), search the version's own FAISS index — the one the service searches — for its nearest
*other* nodule, skipping the nodule itself and every nodule of the same patient (of the same
series where the patient is unknown). The threshold is the ``MATCH_PERCENTILE``-th percentile
(5th, linear interpolation) of those cosine similarities: 95% of the catalogue's nodules have a
nodule of another patient at least this similar. A query whose nearest neighbour is less similar
than that has no close match in the catalogue, and the service flags it and withholds the vote.

The threshold is written into the version's ``manifest.json`` (key ``match_threshold``) by the
build and read back by ``Catalog``; versions built before it existed have none (the service then
answers ``close_match: null``; a rebuild, which reuses every vector, adds it).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from model.store.manifest import Manifest
from model.store.vector_index import search

logger = logging.getLogger(__name__)

#: Percentile of the nearest-other-patient similarities taken as the threshold.
MATCH_PERCENTILE = 5.0
#: Queries used for the calibration (a fixed random sample beyond this): bounds the build's work
#: at O(MAX_QUERIES * search) however large the catalogue.
MAX_QUERIES = 5000
#: Fewer usable similarities than this give no threshold (a percentile of a handful is noise).
MIN_QUERIES = 5
RULE = (
    "percentile of each catalogue nodule's nearest other-patient cosine similarity "
    "(leave-one-out on the version's own index)"
)
#: Quantiles recorded alongside the threshold, to show the distribution it came from.
RECORDED_PERCENTILES = (1.0, 5.0, 10.0, 25.0, 50.0)


class MatchThresholdError(ValueError):
    """A manifest's ``match_threshold`` entry is malformed."""


@dataclass(frozen=True)
class MatchThreshold:
    """The calibrated similarity below which a query has no close match in the catalogue."""

    value: float
    """Cosine similarity, in [-1, 1]."""
    percentile: float
    """Which percentile of the nearest-other-patient similarities ``value`` is."""
    n_queries: int
    """Catalogue nodules whose nearest other-patient similarity entered the percentile."""
    n_nodules: int
    """Nodules in the version."""
    quantiles: dict[str, float]
    """``"p1"``, ``"p5"``, ... of the same similarities."""
    rule: str = RULE

    def to_manifest(self) -> dict[str, Any]:
        """The JSON object stored as the manifest's ``match_threshold``."""
        return asdict(self)

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> MatchThreshold | None:
        """The threshold a manifest records; None for versions built without one.

        Raises:
            MatchThresholdError: the entry exists but is not a valid threshold.
        """
        entry = manifest.match_threshold
        if entry is None:
            return None
        if not isinstance(entry, Mapping):
            raise MatchThresholdError("match_threshold is not an object")
        try:
            value = float(entry["value"])
            percentile = float(entry["percentile"])
            n_queries = int(entry["n_queries"])
            n_nodules = int(entry["n_nodules"])
            quantiles = {str(k): float(v) for k, v in dict(entry.get("quantiles", {})).items()}
            rule = str(entry.get("rule", RULE))
        except (KeyError, TypeError, ValueError) as e:
            raise MatchThresholdError(f"match_threshold is malformed ({e!r})") from None
        if not (math.isfinite(value) and -1.0 <= value <= 1.0):
            raise MatchThresholdError(f"match_threshold value {value} is not a cosine similarity")
        if not 0.0 < percentile < 100.0 or not 0 < n_queries <= n_nodules:
            raise MatchThresholdError("match_threshold percentile or counts are out of range")
        return cls(value, percentile, n_queries, n_nodules, quantiles, rule)


def patient_group(series_uid: str, patient_id: str | None) -> str:
    """The key calibration groups nodules by: the patient, or the series when it is unknown."""
    return f"patient:{patient_id}" if patient_id else f"series:{series_uid}"


def nearest_other_similarities(
    index: Any,
    vectors: npt.ArrayLike,
    ids: npt.ArrayLike,
    groups: Sequence[str],
    rows: npt.ArrayLike | None = None,
) -> npt.NDArray[np.float64]:
    """Cosine similarity of each queried row's nearest nodule of another group, by ``index``.

    Args:
        index: the FAISS index holding ``vectors`` under ``ids``.
        vectors: ``(n, d)`` float32 unit vectors, row i stored under ``ids[i]``.
        ids: ``(n,)`` int64 FAISS ids.
        groups: ``n`` group keys (patient); neighbours of the query's own group are skipped.
        rows: the rows to query (default: all).

    Returns:
        ``(len(rows),)`` similarities; NaN where the index returned no nodule of another group.
    """
    x = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    id_array = np.asarray(ids, dtype=np.int64)
    n = len(id_array)
    if len(groups) != n or x.shape[0] != n:
        raise ValueError(f"{x.shape[0]} vectors, {n} ids and {len(groups)} groups")
    query_rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    _, codes = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    codes = codes.astype(np.int64)
    order = np.argsort(id_array)
    sorted_ids = id_array[order]
    best = np.full(len(query_rows), np.nan, dtype=np.float64)
    if n < 2:
        return best
    # The nearest other-group nodule is within the first (largest group + 1) exact results;
    # approximate indexes may need more, hence the widening loop.
    k = int(min(n, np.bincount(codes).max() + 1))
    pending = np.arange(len(query_rows))
    while len(pending):
        scores, found = search(index, x[query_rows[pending]], k)
        valid = found >= 0
        position = np.clip(np.searchsorted(sorted_ids, np.where(valid, found, 0)), 0, n - 1)
        found_rows = order[position]
        valid &= sorted_ids[position] == found
        other = valid & (codes[found_rows] != codes[query_rows[pending]][:, None])
        hit = other.any(axis=1)
        first = other.argmax(axis=1)
        best[pending[hit]] = scores[hit, first[hit]]
        pending = pending[~hit]
        if k >= n:
            break
        k = min(n, k * 4)
    return best


def calibrate_match_threshold(
    index: Any,
    vectors: npt.ArrayLike,
    ids: npt.ArrayLike,
    groups: Sequence[str],
    *,
    percentile: float = MATCH_PERCENTILE,
    max_queries: int = MAX_QUERIES,
    seed: int = 0,
) -> MatchThreshold | None:
    """The version's close-match threshold (module docstring); None with too few usable queries.

    ``groups``: one key per vector, its patient (or ``series:<uid>`` when the patient is unknown).
    """
    n = len(groups)
    rows = np.arange(n)
    if n > max_queries:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=max_queries, replace=False))
    sims = nearest_other_similarities(index, vectors, ids, groups, rows)
    usable = sims[np.isfinite(sims)]
    if len(usable) < MIN_QUERIES:
        logger.warning(
            "no match threshold: %d nodules have a nodule of another patient (need %d)",
            len(usable),
            MIN_QUERIES,
        )
        return None
    quantiles = {
        f"p{q:g}": float(np.percentile(usable, q)) for q in sorted({*RECORDED_PERCENTILES})
    }
    value = float(np.clip(np.percentile(usable, percentile), -1.0, 1.0))
    return MatchThreshold(
        value=value,
        percentile=float(percentile),
        n_queries=len(usable),
        n_nodules=n,
        quantiles=quantiles,
    )
