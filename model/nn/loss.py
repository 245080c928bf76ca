"""The training losses of the FP-reduction network.

``hard_mining_loss``: binary cross-entropy with hard negative mining (nodule vs candidate);
``segmentation_loss``: BCE plus soft Dice of the mask branch, over the samples that have a mask.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def hard_mining_loss(
    logits: Tensor, labels: Tensor, *, negative_fraction: float = 0.5, min_negatives: int = 1
) -> tuple[Tensor, Tensor]:
    """BCE over all positives and only the hardest negatives of the batch.

    Candidates are mostly easy negatives; averaging over all of them lets the easy ones swamp the
    gradient. Here the negatives are ranked by their loss and only the top
    ``ceil(negative_fraction * n_negatives)`` (at least ``min_negatives``) enter the mean.

    Args:
        logits: (N,) nodule logits.
        labels: (N,) 1 for nodules, 0 for candidates.
        negative_fraction: share of the batch's negatives kept, in (0, 1].
        min_negatives: keep at least this many negatives when there are that many.

    Returns:
        (the scalar loss, a boolean (N,) mask of the samples that entered it).
    """
    if logits.shape != labels.shape or logits.ndim != 1:
        raise ValueError(
            f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} must be (N,)"
        )
    if not 0.0 < negative_fraction <= 1.0:
        raise ValueError("negative_fraction must be in (0, 1]")
    per_sample = F.binary_cross_entropy_with_logits(
        logits.float(), labels.float(), reduction="none"
    )
    positive = labels > 0.5
    used = positive.clone()
    negatives = torch.nonzero(~positive).flatten()
    if negatives.numel():
        keep = min(
            negatives.numel(), max(min_negatives, math.ceil(negative_fraction * negatives.numel()))
        )
        hardest = negatives[torch.topk(per_sample[negatives].detach(), keep).indices]
        used[hardest] = True
    return per_sample[used].mean(), used


def segmentation_loss(
    logits: Tensor, target: Tensor, has_mask: Tensor, *, smooth: float = 1.0
) -> Tensor:
    """Voxel-wise BCE plus soft Dice loss of the mask branch, averaged over masked samples.

    Each sample's loss is the mean BCE over its voxels plus ``1 - soft Dice`` of the sigmoid
    probabilities with its target (``(2 sum(p t) + smooth) / (sum p + sum t + smooth)``); the
    result is their mean over the samples whose ``has_mask`` is True. Samples without a mask
    (candidates, nodules nobody outlined) add nothing.

    Args:
        logits: (N, 1, D, H, W) mask logits (``NoduleNet.segment``).
        target: (N, 1, D, H, W) the reference mask, 1 inside the nodule and 0 outside (bool or
            float; soft values in [0, 1] are allowed).
        has_mask: (N,) bool, True for the samples whose ``target`` is a real mask.
        smooth: added to the Dice's numerator and denominator (an empty mask predicted empty
            scores 1).

    Returns:
        The scalar loss; 0 (still attached to ``logits``' graph) when no sample has a mask.

    Raises:
        ValueError: shapes that do not match those above.
    """
    if logits.ndim != 5 or logits.shape[1] != 1 or target.shape != logits.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must both be "
            "(N, 1, D, H, W)"
        )
    if has_mask.shape != logits.shape[:1]:
        raise ValueError(f"has_mask {tuple(has_mask.shape)} must be (N,) = {logits.shape[:1]}")
    keep = has_mask.to(device=logits.device, dtype=torch.bool)
    if not bool(keep.any()):
        return logits.sum() * 0.0
    x = logits[keep].float().flatten(1)
    t = target[keep].to(device=logits.device, dtype=torch.float32).flatten(1)
    bce = F.binary_cross_entropy_with_logits(x, t, reduction="none").mean(dim=1)
    p = torch.sigmoid(x)
    dice = (2.0 * (p * t).sum(dim=1) + smooth) / (p.sum(dim=1) + t.sum(dim=1) + smooth)
    return (bce + 1.0 - dice).mean()
