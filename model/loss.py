"""The training loss of the FP-reduction network: binary cross-entropy with hard negative mining."""

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
