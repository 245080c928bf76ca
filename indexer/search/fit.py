"""Fit a search space: the profile's statistics and the projection learned from readers' ratings.

The learned block is a ridge regression from the network's features and the z-scored profile
to the readers' mean rating of each of the 9 LIDC characteristics (each z-scored). Two nodules'
predicted rating vectors are close where the readers would have rated them alike on all 9, not
on malignancy alone, so the block cannot collapse to size (the idea of Loyman & Greenspan's
rating-distance retrieval, ``markloyman/LungNoduleRetrieval``, in its simplest, closed-form
version, which a few hundred nodules can fit).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from model.clinical.labels import CHARACTERISTICS
from model.nn.search_space import BlockName, LearnedProjection, SearchSpace, Standardizer

F64 = npt.NDArray[np.float64]


class FitError(ValueError):
    """Too few rated nodules to fit on."""


def rated_rows(profiles: npt.ArrayLike, targets: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Rows with a profile and all 9 mean ratings."""
    p, t = np.asarray(profiles, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    out: npt.NDArray[np.bool_] = np.all(np.isfinite(p), axis=1) & np.all(np.isfinite(t), axis=1)
    return out


def fit_projection(
    features: npt.ArrayLike,
    profiles_z: npt.ArrayLike,
    targets: npt.ArrayLike,
    alpha: float,
    trained_on: str,
) -> LearnedProjection:
    """Ridge regression of z-scored mean ratings (N, 9) on standardised [features, profile_z].

    Rows without all ratings or a profile are left out.

    Raises:
        FitError: fewer than 10 usable rows.
    """
    x = np.concatenate(
        [np.asarray(features, dtype=np.float64), np.asarray(profiles_z, dtype=np.float64)], axis=1
    )
    y = np.asarray(targets, dtype=np.float64)
    keep = rated_rows(x, y)
    if keep.sum() < 10:
        raise FitError(f"{int(keep.sum())} rated nodules with a profile; at least 10 are needed")
    x, y = x[keep], y[keep]
    inputs = Standardizer.fit(x)
    outputs = Standardizer.fit(y)
    a = inputs.apply(x)
    b = outputs.apply(y)
    # Primal ridge: (A'A + alpha I) W = A'B; inputs are centred, so the bias is B's mean (0).
    w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ b)
    return LearnedProjection(
        targets=CHARACTERISTICS,
        input_scaler=inputs,
        weights=tuple(tuple(float(v) for v in row) for row in w.T),
        bias=tuple(0.0 for _ in CHARACTERISTICS),
        alpha=alpha,
        trained_on=trained_on,
        n_nodules=int(keep.sum()),
    )


def fit_space(
    weights: Mapping[BlockName, float],
    features: npt.ArrayLike,
    profiles: npt.ArrayLike,
    targets: npt.ArrayLike,
    *,
    alpha: float,
    trained_on: str,
    chosen_by: str = "",
) -> SearchSpace:
    """A search space fitted on rows (N): unit features, profiles and mean ratings (N, 9).

    The profile's statistics come from the rows with a profile; the projection is fitted only
    when the learned block has a weight.

    Raises:
        FitError: no profiles, or too few rated rows for the projection.
    """
    p = np.asarray(profiles, dtype=np.float64)
    known = np.all(np.isfinite(p), axis=1)
    if known.sum() < 2:
        raise FitError("fewer than 2 nodules with a profile")
    scaler = Standardizer.fit(p[known])
    projection = None
    if weights.get("learned", 0.0) > 0:
        projection = fit_projection(features, scaler.apply(p), targets, alpha, trained_on)
    return SearchSpace(
        weights=dict(weights), profile_scaler=scaler, projection=projection, chosen_by=chosen_by
    )
