"""The search vector's blocks: features, size, density, shape and a projection learned from readers.

A card without a ``SearchSpace`` searches by the FP-reduction network's pooled features alone
(the paper's mid-features). With one, the stored vector is the concatenation of the blocks the
space weights above zero, in ``BLOCK_ORDER``:

- ``features``: the network's unit feature vector (``model.nn.network.pool_embedding``);
- ``size``, ``density``, ``shape``: the nodule's profile (``model.nn.profile``), z-scored with the
  statistics of the nodules the space was fitted on;
- ``learned``: a linear map of the features and the z-scored profile to the readers' 9
  characteristic ratings (z-scored), fitted so that nodules the readers rated alike land close
  (``indexer.search.fit``).

Every block is a unit vector scaled by the square root of its share of the weights, so the inner
product of two vectors is the weighted mean of the blocks' cosine similarities (the service's
metric stays cosine). A z-scored block ``z`` (n values) becomes a unit vector by the inverse
stereographic projection of ``u = z / sqrt(n)``: ``(2u, |u|^2 - 1) / (|u|^2 + 1)``; the cosine of
two such vectors is ``1 - 2|u1 - u2|^2 / ((1 + |u1|^2)(1 + |u2|^2))``, falling with their Euclidean
distance (nearest stays nearest wherever the two nodules have similar norms).

A query without a size (no radiologist's axes and no estimate) has no profile: its measured and
learned blocks are zero, so it is searched by the features alone and its similarities are lower
(a vote then has no close match to stand on).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.nn.network import EmbeddingPart
from model.nn.profile import PROFILE_BLOCKS, PROFILE_NAMES

BlockName = Literal["features", "size", "density", "shape", "learned"]
BLOCK_ORDER: tuple[BlockName, ...] = ("features", "size", "density", "shape", "learned")
#: The smallest standard deviation a column is divided by (a constant column stays ~0).
MIN_SCALE = 1e-3

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


class Standardizer(BaseModel):
    """Column means and scales: ``(x - mean) / scale``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mean: tuple[float, ...]
    scale: tuple[float, ...]

    @model_validator(mode="after")
    def _same_length(self) -> Standardizer:
        if len(self.mean) != len(self.scale) or any(s <= 0 for s in self.scale):
            raise ValueError("mean and scale must have the same length, scales > 0")
        return self

    @classmethod
    def fit(cls, x: npt.ArrayLike) -> Standardizer:
        """Means and standard deviations (at least ``MIN_SCALE``) of the rows of ``x``."""
        a = np.asarray(x, dtype=np.float64)
        return cls(
            mean=tuple(float(v) for v in a.mean(axis=0)),
            scale=tuple(float(max(v, MIN_SCALE)) for v in a.std(axis=0)),
        )

    def apply(self, x: npt.ArrayLike) -> F64:
        """``(x - mean) / scale`` of (N, len(mean)) rows."""
        out: F64 = (np.asarray(x, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(
            self.scale
        )
        return out


class LearnedProjection(BaseModel):
    """A linear map from the features and the z-scored profile to z-scored reader ratings.

    ``predicted = weights @ input_scaler.apply([features, profile_z]) + bias`` (k = len(targets)).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    targets: tuple[str, ...]
    input_scaler: Standardizer
    weights: tuple[tuple[float, ...], ...]
    bias: tuple[float, ...]
    alpha: float = Field(gt=0)
    trained_on: str
    n_nodules: int = Field(ge=1)

    @model_validator(mode="after")
    def _shapes(self) -> LearnedProjection:
        if len(self.weights) != len(self.targets) or len(self.bias) != len(self.targets):
            raise ValueError("one weight row and one bias per target")
        if any(len(row) != len(self.input_scaler.mean) for row in self.weights):
            raise ValueError("every weight row must match the inputs")
        return self

    def predict(self, inputs: npt.ArrayLike) -> F64:
        """(N, k) predicted z-scored ratings of (N, d) inputs."""
        x = self.input_scaler.apply(inputs)
        out: F64 = x @ np.asarray(self.weights).T + np.asarray(self.bias)
        return out


class SearchSpace(BaseModel):
    """Which blocks make the search vector, their weights and the statistics they need."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weights: dict[BlockName, float]
    profile_scaler: Standardizer
    projection: LearnedProjection | None = None
    chosen_by: str = ""

    @model_validator(mode="after")
    def _valid(self) -> SearchSpace:
        if any(w < 0 or not np.isfinite(w) for w in self.weights.values()):
            raise ValueError("block weights must be finite and >= 0")
        if sum(self.weights.values()) <= 0:
            raise ValueError("at least one block needs a weight above 0")
        if len(self.profile_scaler.mean) != len(PROFILE_NAMES):
            raise ValueError(f"the profile scaler needs {len(PROFILE_NAMES)} columns")
        if self.weights.get("learned", 0.0) > 0 and self.projection is None:
            raise ValueError("the learned block has a weight but no projection")
        return self

    @property
    def blocks(self) -> tuple[BlockName, ...]:
        """The blocks in the vector, in order (weight above 0)."""
        return tuple(b for b in BLOCK_ORDER if self.weights.get(b, 0.0) > 0)

    def shares(self) -> dict[BlockName, float]:
        """Each block's weight divided by their sum."""
        total = sum(self.weights.get(b, 0.0) for b in self.blocks)
        return {b: self.weights[b] / total for b in self.blocks}

    def block_dim(self, block: BlockName, feature_dim: int) -> int:
        """How many numbers a block takes in the vector."""
        if block == "features":
            return feature_dim
        if block == "learned":
            assert self.projection is not None
            return len(self.projection.targets) + 1
        return len(PROFILE_BLOCKS[block]) + 1

    def dim(self, feature_dim: int) -> int:
        """The search vector's length."""
        return sum(self.block_dim(b, feature_dim) for b in self.blocks)

    def parts(self, feature_dim: int) -> list[EmbeddingPart]:
        """The blocks' places in the vector (for per-block similarity)."""
        out, start = [], 0
        for b in self.blocks:
            stop = start + self.block_dim(b, feature_dim)
            out.append(EmbeddingPart(b, start, stop))
            start = stop
        return out

    def compose(self, features: npt.ArrayLike, profiles: npt.ArrayLike) -> F32:
        """The search vectors (N, dim) of unit features (N, F) and profiles (N, P).

        A profile row of NaN (no size known) gives zero measured and learned blocks.
        """
        f = np.asarray(features, dtype=np.float64)
        # z-scored profiles; a NaN row (no size) stays NaN until it is zeroed below.
        z = self.profile_scaler.apply(np.asarray(profiles, dtype=np.float64).reshape(len(f), -1))
        known = np.all(np.isfinite(z), axis=1)
        z = np.where(known[:, None], z, 0.0)
        shares = self.shares()
        pieces = []
        for b in self.blocks:
            if b == "features":
                block = f
            elif b == "learned":
                assert self.projection is not None
                predicted = self.projection.predict(np.concatenate([f, z], axis=1))
                block = _stereographic(predicted) * known[:, None]
            else:
                block = _stereographic(z[:, _profile_columns(b)]) * known[:, None]
            pieces.append(block * np.sqrt(shares[b]))
        return np.concatenate(pieces, axis=1).astype(np.float32)


def _profile_columns(block: str) -> slice:
    start = 0
    for name, names in PROFILE_BLOCKS.items():
        if name == block:
            return slice(start, start + len(names))
        start += len(names)
    raise KeyError(block)


def _stereographic(z: npt.ArrayLike) -> F64:
    """Unit vectors (N, n + 1) of z-scored rows (N, n): inverse stereographic of z / sqrt(n)."""
    a = np.asarray(z, dtype=np.float64)
    u = a / np.sqrt(a.shape[1])
    norm2 = np.sum(u * u, axis=1, keepdims=True)
    out: F64 = np.concatenate([2.0 * u, norm2 - 1.0], axis=1) / (norm2 + 1.0)
    return out
