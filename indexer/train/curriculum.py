"""What the network trains on, epoch by epoch: curriculum, online sample filtering, augmentation.

* Curriculum: every sample gets a difficulty from its patch (how nodule-like a negative's centre
  is, how faint a positive's centre is), ranked within its class. Epoch 0 admits the easiest
  ``start`` share; the share grows linearly to all samples by epoch ``ramp_epochs``.
* Online sample filtering: a sample the network classified confidently and correctly during an
  epoch is dropped from the following epochs, down to a floor per class.
* Hard example mining happens inside each batch (``model.nn.loss.hard_mining_loss``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import ndimage

F32 = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]


def center_intensity(patches: F32, radius: int = 3) -> npt.NDArray[np.float64]:
    """Mean scaled intensity of the central (2r)^3 voxels of each patch, (N,) in [0, 1]."""
    _, d, h, w = patches.shape
    c = [n // 2 for n in (d, h, w)]
    core = patches[
        :,
        c[0] - radius : c[0] + radius,
        c[1] - radius : c[1] + radius,
        c[2] - radius : c[2] + radius,
    ]
    return np.asarray(core.reshape(len(patches), -1).mean(axis=1), dtype=np.float64)


def difficulty_ranks(center: npt.ArrayLike, labels: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Difficulty in [0, 1] ranked within each class (0 = easiest).

    A negative with a bright centre (vessel, bump, blob) is hard; a positive with a faint centre
    (ground glass, small, subtle) is hard.
    """
    c = np.asarray(center, dtype=np.float64)
    y = np.asarray(labels)
    raw = np.where(y == 1, -c, c)
    ranks = np.zeros(len(c))
    for label in (0, 1):
        idx = np.flatnonzero(y == label)
        if len(idx) > 1:
            order = np.argsort(np.argsort(raw[idx], kind="stable"), kind="stable")
            ranks[idx] = order / (len(idx) - 1)
    return ranks


@dataclass(frozen=True)
class Curriculum:
    """Admits samples from easy to hard over the first ``ramp_epochs`` epochs."""

    start: float = 0.4
    ramp_epochs: int = 4

    def share(self, epoch: int) -> float:
        """Share of each class admitted at ``epoch`` (0-based)."""
        if self.ramp_epochs <= 0:
            return 1.0
        return float(min(1.0, self.start + (1.0 - self.start) * epoch / self.ramp_epochs))

    def admitted(self, epoch: int, ranks: npt.ArrayLike) -> BoolArray:
        """Mask of the samples whose difficulty rank is within this epoch's share."""
        return np.asarray(ranks) <= self.share(epoch) + 1e-9


@dataclass
class OnlineFilter:
    """Drops samples the network already gets right with confidence.

    Attributes:
        threshold: a negative with p < threshold or a positive with p > 1 - threshold is
            confident.
        floor: never drop below this share of each class.
        dropped: per-sample flags (set by ``update``).
    """

    n_samples: int
    threshold: float = 0.02
    floor: float = 0.3
    dropped: BoolArray = field(init=False)

    def __post_init__(self) -> None:
        self.dropped = np.zeros(self.n_samples, dtype=bool)

    def update(self, indices: npt.ArrayLike, probs: npt.ArrayLike, labels: npt.ArrayLike) -> int:
        """Record an epoch's predictions; returns how many samples were newly dropped."""
        idx = np.asarray(indices)
        p = np.asarray(probs, dtype=np.float64)
        y = np.asarray(labels)
        confident = np.where(y[idx] == 1, p > 1.0 - self.threshold, p < self.threshold)
        newly = 0
        for label in (0, 1):
            of_class = np.flatnonzero(y == label)
            limit = int(len(of_class) * (1.0 - self.floor)) - int(self.dropped[of_class].sum())
            mine = np.flatnonzero(confident & (y[idx] == label) & ~self.dropped[idx])
            if limit <= 0 or len(mine) == 0:
                continue
            # The most confident first, if only some may go.
            margin = np.abs(p[mine] - 0.5)
            chosen = idx[mine[np.argsort(-margin, kind="stable")[:limit]]]
            self.dropped[chosen] = True
            newly += len(chosen)
        return newly


def augment(
    patch: F32,
    rng: np.random.Generator,
    *,
    intensity_jitter: float = 0.0,
    scale_jitter: float = 0.0,
) -> F32:
    """Random flips along the three axes, a random 90-degree axial turn, and optional jitters.

    The patch grid is isotropic, so flips and turns keep voxel size; shifts come from the cache
    crop.

    Args:
        patch: (D, H, W) scaled patch (values in [0, 1] of the card's HU window).
        rng: the training run's generator.
        intensity_jitter: largest offset added to the whole patch, in window units (0.02 of a
            1,400 HU window is 28 HU): scanners and kernels shift HU by that much.
        scale_jitter: largest relative zoom about the patch centre (0.1: 0.9x to 1.1x), trilinear,
            edge values repeated; it trades a little size information for shape variety.
    """
    out, _ = augment_with_mask(
        patch, None, rng, intensity_jitter=intensity_jitter, scale_jitter=scale_jitter
    )
    return out


def augment_with_mask(
    patch: F32,
    mask: F32 | None,
    rng: np.random.Generator,
    *,
    intensity_jitter: float = 0.0,
    scale_jitter: float = 0.0,
) -> tuple[F32, F32 | None]:
    """``augment``, with the nodule's mask (D, H, W) moved by the same flips, turn and zoom.

    The intensity jitter is the patch's alone. The random draws are those of ``augment``, in
    the same order, with or without a mask.
    """
    layers = [patch] if mask is None else [patch, mask]
    out = np.stack(layers)
    for axis in range(3):
        if rng.random() < 0.5:
            out = np.flip(out, axis=axis + 1)
    out = np.rot90(out, k=int(rng.integers(4)), axes=(2, 3))
    if scale_jitter > 0.0:
        zoom = float(rng.uniform(1.0 - scale_jitter, 1.0 + scale_jitter))
        center = (np.asarray(out.shape[1:], dtype=np.float64) - 1.0) / 2.0
        # Output voxel o samples input centre + (o - centre) / zoom.
        out = np.stack(
            [
                ndimage.affine_transform(
                    np.ascontiguousarray(layer, dtype=np.float32),
                    np.full(3, 1.0 / zoom),
                    offset=center - center / zoom,
                    order=1,
                    mode="nearest",
                )
                for layer in out
            ]
        )
    image = out[0]
    if intensity_jitter > 0.0:
        image = image + np.float32(rng.uniform(-intensity_jitter, intensity_jitter))
    moved = None if mask is None else np.ascontiguousarray(out[1], dtype=np.float32)
    return np.ascontiguousarray(image, dtype=np.float32), moved
