"""A query's search vector: from its image and one size measurement, never from labels.

The size the measured and learned blocks (``model.nn.search_space``) are read at is, in order:

1. the radiologist's axes (mean of the long and short axis, as Lung-RADS averages them);
2. the catalogue's recorded diameter, when the queried point is a catalogue nodule (the
   indexer built its stored vector with that same diameter, so the two vectors are equal);
3. the service's estimate (``model.clinical.nodule_mask.find_nodule``);
4. none: the measured and learned blocks are zero and the features alone search.

The indexer, the service (points, uploads, SRs) and ``nodule-index report`` all make their
vectors here or with ``Embedder.vectors`` on profiles from ``model.nn.profile``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from model.ct.volume import VolumeSource
from model.nn.embedder import Embedder
from model.nn.profile import PROFILE_NAMES, ProfileError, profile_from_hu, profile_spec
from model.preprocessing import patch_hu

SizeSource = Literal["measured", "recorded", "estimated", "none"]
#: How each size source is named where a user reads it.
SIZE_SOURCE_TITLES: dict[str, str] = {
    "measured": "the radiologist's axes",
    "recorded": "the catalogue's recorded diameter",
    "estimated": "estimated from the image",
    "none": "no size: searched by the image features alone",
}


@dataclass(frozen=True)
class QuerySize:
    """The diameter a query's vector is read at, and where it came from (world mm)."""

    diameter_mm: float | None
    source: SizeSource

    @classmethod
    def choose(
        cls,
        measured_axes_mm: tuple[float, float] | None = None,
        recorded_mm: float | None = None,
        estimated_mm: float | None = None,
    ) -> QuerySize:
        """The first size there is, in the module's order."""
        if measured_axes_mm is not None:
            return cls(float(np.mean(measured_axes_mm)), "measured")
        if recorded_mm is not None and np.isfinite(recorded_mm) and recorded_mm > 0:
            return cls(float(recorded_mm), "recorded")
        if estimated_mm is not None and np.isfinite(estimated_mm) and estimated_mm > 0:
            return cls(float(estimated_mm), "estimated")
        return cls(None, "none")


def query_profile(
    embedder: Embedder,
    source: VolumeSource,
    center_xyz: tuple[float, float, float],
    size: QuerySize,
) -> npt.NDArray[np.float64]:
    """(1, P) profile of the point at the size; a NaN row without a size or blocks that use it."""
    if size.diameter_mm is None or not embedder.uses_profile:
        return np.full((1, len(PROFILE_NAMES)), np.nan)
    return grid_profile(
        patch_hu(source, center_xyz, profile_spec(embedder.card.preprocessing)), size
    )


def grid_profile(profile_hu: npt.ArrayLike, size: QuerySize) -> npt.NDArray[np.float64]:
    """(1, P) profile read off an already cut profile grid (an upload's); NaN without a size."""
    out = np.full((1, len(PROFILE_NAMES)), np.nan)
    if size.diameter_mm is None:
        return out
    # An unusable grid or size: searched by the features alone, as without a size.
    with contextlib.suppress(ProfileError):
        out[0] = profile_from_hu(profile_hu, size.diameter_mm).values
    return out


def query_vector(
    embedder: Embedder,
    source: VolumeSource,
    center_xyz: tuple[float, float, float],
    patch: npt.NDArray[np.float32],
    size: QuerySize,
) -> npt.NDArray[np.float32]:
    """The search vector of the nodule at a point: its patch and its profile at ``size``."""
    vector: npt.NDArray[np.float32] = embedder.vectors(
        patch[None], query_profile(embedder, source, center_xyz, size)
    )[0]
    return vector
