"""The malignancy vote of a set of neighbours: one rule for the service and the evaluation.

``malignant_probability`` weighs each labelled neighbour's binary label (0 benign, 1 malignant)
by its similarity (cosine, clipped at 0); ``majority`` is the plain majority of those labels with
a tie decided by the weighted probability; ``four_class`` is the share of each rating 1/2/4/5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: The weight of a neighbour with similarity <= 0: it still counts, but barely.
_EPS = 1e-9
FOUR_CLASSES = (1, 2, 4, 5)


def malignant_probability(
    similarities: npt.ArrayLike, labels_binary: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Similarity-weighted share of malignant neighbours, per query.

    Args:
        similarities: ``(n_queries, k)`` or ``(k,)`` cosine similarities.
        labels_binary: the same shape, 0/1 labels; NaN marks a neighbour without a label
            (it does not count).

    Returns:
        ``(n_queries,)`` (or a 0-d array) probabilities; NaN where no neighbour is labelled.
    """
    sims = np.asarray(similarities, dtype=np.float64)
    labels = np.asarray(labels_binary, dtype=np.float64)
    known = ~np.isnan(labels)
    weights = np.where(known, np.clip(sims, 0.0, None) + _EPS, 0.0)
    total = weights.sum(axis=-1)
    weighted = (weights * np.where(known, labels, 0.0)).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, weighted / np.where(total > 0, total, 1.0), np.nan)


def majority(labels_binary: npt.ArrayLike, probability: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Majority of the labelled neighbours (1 malignant, 0 benign); ties go to the weighted vote.

    NaN where no neighbour is labelled.
    """
    labels = np.asarray(labels_binary, dtype=np.float64)
    prob = np.asarray(probability, dtype=np.float64)
    known = ~np.isnan(labels)
    count = known.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(known, labels, 0.0).sum(axis=-1) / np.where(count > 0, count, 1)
    vote = np.where(share > 0.5, 1.0, np.where(share < 0.5, 0.0, (prob >= 0.5).astype(float)))
    return np.where(count > 0, vote, np.nan)


def four_class_shares(ratings: Sequence[int]) -> dict[str, float]:
    """Share of each 4-class label (keys "1", "2", "4", "5") among labelled neighbours."""
    n = len(ratings)
    if n == 0:
        return {}
    return {str(r): sum(1 for v in ratings if v == r) / n for r in FOUR_CLASSES}


@dataclass(frozen=True)
class MatchState:
    """Whether the catalogue holds anything close to a query: the one rule the screen and SR share.

    The nearest returned neighbour decides (``model.store.calibration``): ``close_match`` is
    ``best_similarity >= threshold``, None without a neighbour or without a threshold. A query
    with no close match gets no vote: it is withheld on the screen and left out of the SR.
    """

    best_similarity: float | None
    threshold: float | None
    close_match: bool | None

    @property
    def withheld(self) -> bool:
        """The vote is withheld: there is a threshold and the nearest neighbour is below it."""
        return self.close_match is False

    def weak(self, similarity: float) -> bool | None:
        """A neighbour below the threshold (a weak match); None without a threshold."""
        return None if self.threshold is None else bool(similarity < self.threshold)


def match_state(best_similarity: float | None, threshold: float | None) -> MatchState:
    """The match state of a query whose nearest neighbour has ``best_similarity`` (cosine)."""
    close = (
        None if best_similarity is None or threshold is None else bool(best_similarity >= threshold)
    )
    return MatchState(best_similarity, threshold, close)


#: The state of a search with no threshold and no neighbour known (older callers, tests).
UNKNOWN_MATCH = MatchState(None, None, None)
