"""How well the service's nodule masks agree with a set's reference masks, beside region growing.

A LUNA16-layout set may carry reference masks (``nodule_masks/<seriesuid>.mhd`` on the scan's
own grid: the readers' VOI masks after ``import-crops``, the inserted shapes of ``real-set``, the
synthetic outlines). For each measured nodule whose scan has one, the reference nodule is the
mask's component nearest the nodule's centre (within ``MASK_CENTER_REACH_MM``, as the service
picks its own), and two masks are scored against it on the CT's own voxels:

- the mask the service finds (``model.clinical.nodule_mask.find_nodule``: the model's mask branch);
- region growing from the same centre (``model.clinical.measure.grow_at``), the fallback.

Per method: the share of nodules that get a mask, the median Dice (a refusal counts 0) and the
median over the nodules it answers, and the mean diameter ((long + short axial axis) / 2)
against the catalogue's ``diameter_mm`` (Pearson r, mean absolute and signed difference).
The same, per diameter group, with region growing's median Dice on the nodules it answers
beside the branch's on those same nodules, and the mean paired differences of Dice and of the
absolute diameter error, with bootstrap intervals: region growing measures better where its
Dice is higher (interval above zero) and its diameter no worse (error interval not above zero).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from indexer.evaluate.scores import bootstrap
from model.clinical.measure import (
    GROW_METHOD,
    BoolArray,
    MeasureError,
    NoduleRegion,
    grow_at,
)
from model.clinical.nodule_mask import FoundNodule, component_at
from model.ct.open import load_volume
from model.ct.volume import CTVolume, VolumeSource

logger = logging.getLogger(__name__)

#: The paired bootstrap of "region growing measures better" (resampled nodules).
BOOTSTRAP_REPLICATES = 2000
BOOTSTRAP_SEED = 0

#: Diameter groups (mm, ``[low, high)``) of the per-group comparison (as ``bench_mask_head``).
DIAMETER_GROUPS: tuple[tuple[float, float], ...] = ((0.0, 6.0), (6.0, 10.0), (10.0, 20.0))
#: The upper end of the open last group (finite, so that a policy range is plain JSON).
OPEN_END_MM = 1000.0


@dataclass(frozen=True)
class NoduleMaskScore:
    """One nodule's two masks against its reference mask."""

    diameter_mm: float
    """The catalogue's diameter."""
    network_dice: float | None
    """None: the branch found no mask."""
    network_mean_mm: float | None
    grown_dice: float | None
    """None: region growing found none."""
    grown_mean_mm: float | None
    service_dice: float | None = None
    """What ``find_nodule`` answered (the card's mask policy applied); None: nothing."""
    service_mean_mm: float | None = None
    fold: int | None = None
    """The cross-validation fold whose model measured it (None outside ``crossval``)."""

    def under_policy(
        self, ranges: Sequence[tuple[float, float]]
    ) -> tuple[float | None, float | None]:
        """(Dice, mean diameter) of the mask ``find_nodule`` gives under a policy of ``ranges``.

        Region growing's where the branch's diameter is in one and growing answers, else the
        branch's, else (the branch found nothing) region growing's.
        """
        branch = self.network_mean_mm
        in_ranges = branch is not None and any(low <= branch < high for low, high in ranges)
        if in_ranges and self.grown_dice is not None:
            return self.grown_dice, self.grown_mean_mm
        if self.network_dice is not None:
            return self.network_dice, self.network_mean_mm
        return self.grown_dice, self.grown_mean_mm


class MethodAgreement(BaseModel):
    """One method's masks against the reference masks."""

    n: int
    share_with_mask: float
    dice_median: float | None
    """Over every nodule, a refusal counting 0."""
    dice_median_of_masked: float | None
    diameter_pearson_r: float | None
    """Mean diameter vs the catalogue's ``diameter_mm``, nodules with a mask."""
    diameter_mean_abs_diff_mm: float | None
    diameter_mean_signed_diff_mm: float | None


class GroupComparison(BaseModel):
    """Both methods on the nodules of one diameter group."""

    network: MethodAgreement
    region_growing: MethodAgreement
    n_grown: int
    network_dice_median_where_grown: float | None
    """The branch's median Dice on the nodules region growing answers (a refusal counts 0)."""
    grown_dice_median_where_grown: float | None
    grown_minus_network_dice: float | None
    """Mean paired Dice difference on those nodules."""
    grown_minus_network_dice_ci95: tuple[float, float] | None
    """Percentile bootstrap over those nodules (``BOOTSTRAP_REPLICATES``, seeded)."""
    grown_minus_network_abs_error_mm: float | None
    """Mean paired difference of |mean diameter - ``diameter_mm``| (mm) where both measure."""
    grown_minus_network_abs_error_mm_ci95: tuple[float, float] | None
    region_growing_better: bool
    """Region growing measures better where it answers: its Dice interval lies above zero and
    its diameter-error interval does not."""


class MaskQuality(BaseModel):
    """The masks of every measured nodule with a reference mask (module docstring)."""

    reference: str = "the set's nodule_masks/, the component nearest the centre"
    grid: str = "the CT's own voxels"
    n_nodules: int
    network: MethodAgreement
    region_growing: MethodAgreement
    service: MethodAgreement
    """What the service answers: the branch, with the model card's mask policy applied."""
    by_diameter: dict[str, GroupComparison]
    """By the catalogue's diameter."""
    region_growing_better_in: list[str]
    """The groups of ``by_diameter`` where region growing measures better (empty: nowhere)."""
    by_branch_diameter: dict[str, GroupComparison]
    """By the branch's own mean diameter (what the service knows of a queried nodule)."""
    policy_region_growing_mm: list[tuple[float, float]]
    """The ``by_branch_diameter`` ranges where region growing measures better: the mask policy
    this evaluation supports (``model.nn.card.MaskPolicy``)."""
    policy_cross_validated: MethodAgreement | None = None
    """``crossval`` only: each fold's nodules under the policy chosen on the other folds (the
    honest number for the policy); None outside it."""
    policy_per_fold_mm: list[list[tuple[float, float]]] | None = None
    """The policy each fold was measured under (chosen on the other folds)."""


def reference_mask_path(source_path: Path, series_uid: str) -> Path:
    """A LUNA16-layout scan's reference mask (``<data>/nodule_masks/<uid>.mhd``; may not exist)."""
    return source_path.parent.parent / "nodule_masks" / f"{series_uid}.mhd"


def read_reference(mask_path: Path) -> CTVolume | None:
    """A scan's reference mask, or None when the set has none for it or it cannot be read."""
    if not mask_path.is_file():
        return None
    try:
        return load_volume(mask_path)
    except (OSError, ValueError) as e:
        logger.warning("reference mask %s unreadable, its nodules unscored: %s", mask_path.name, e)
        return None


def reference_nodule(
    reference: CTVolume, center_xyz: tuple[float, float, float]
) -> BoolArray | None:
    """The reference mask's nodule at a point, on the scan's whole grid; None where none is near."""
    center = np.asarray(center_xyz, np.float64)
    return component_at(reference.hu_zyx > 0.5, reference.geometry, center)


def region_dice(region: NoduleRegion | None, reference_zyx: BoolArray) -> float | None:
    """Dice of a region (a box of the scan) with a whole-scan mask; None when no region."""
    if region is None:
        return None
    (z0, y0, x0), (dz, dy, dx) = region.start_zyx, region.mask_zyx.shape
    overlap = int((reference_zyx[z0 : z0 + dz, y0 : y0 + dy, x0 : x0 + dx] & region.mask_zyx).sum())
    return 2.0 * overlap / (int(region.mask_zyx.sum()) + int(reference_zyx.sum()))


def score_nodule(
    source: VolumeSource,
    center_xyz: tuple[float, float, float],
    diameter_mm: float,
    found: FoundNodule | None,
    reference_zyx: BoolArray,
) -> NoduleMaskScore:
    """What ``find_nodule`` found and region growing's region, against the reference.

    The branch's region is ``found.branch_region``; region growing runs here unless ``found`` is
    region growing's (the fallback, or the card's mask policy).
    """
    network = None if found is None else found.branch_region
    grown: NoduleRegion | None
    if found is not None and found.method == GROW_METHOD:
        grown = found.region
    else:
        try:
            grown = grow_at(source, center_xyz)
        except MeasureError:
            grown = None
    return NoduleMaskScore(
        diameter_mm=diameter_mm,
        network_dice=region_dice(network, reference_zyx),
        network_mean_mm=None if network is None else network.measurement.mean_diameter_mm,
        grown_dice=region_dice(grown, reference_zyx),
        grown_mean_mm=None if grown is None else grown.measurement.mean_diameter_mm,
        service_dice=None if found is None else region_dice(found.region, reference_zyx),
        service_mean_mm=None if found is None else found.region.measurement.mean_diameter_mm,
    )


def _median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if values else None


def _agreement(
    dice: Sequence[float | None], mean_mm: Sequence[float | None], diameter: Sequence[float]
) -> MethodAgreement:
    masked = [i for i, d in enumerate(dice) if d is not None]
    estimate = np.array([mean_mm[i] for i in masked], dtype=np.float64)
    truth = np.array([diameter[i] for i in masked], dtype=np.float64)
    r = float(np.corrcoef(estimate, truth)[0, 1]) if len(masked) > 2 else None
    return MethodAgreement(
        n=len(dice),
        share_with_mask=len(masked) / len(dice) if dice else 0.0,
        dice_median=_median([d or 0.0 for d in dice]),
        dice_median_of_masked=_median([d for d in dice if d is not None]),
        diameter_pearson_r=None if r is None or np.isnan(r) else r,
        diameter_mean_abs_diff_mm=float(np.mean(np.abs(estimate - truth))) if masked else None,
        diameter_mean_signed_diff_mm=float(np.mean(estimate - truth)) if masked else None,
    )


def _pair(scores: Sequence[NoduleMaskScore]) -> tuple[MethodAgreement, MethodAgreement]:
    diameter = [s.diameter_mm for s in scores]
    return (
        _agreement([s.network_dice for s in scores], [s.network_mean_mm for s in scores], diameter),
        _agreement([s.grown_dice for s in scores], [s.grown_mean_mm for s in scores], diameter),
    )


def group_name(low: float, high: float) -> str:
    """``"0-6 mm"``, or ``">= 20 mm"`` for the open last group."""
    return f">= {low:g} mm" if high >= OPEN_END_MM else f"{low:g}-{high:g} mm"


def paired_interval(differences: Sequence[float]) -> tuple[float, float] | None:
    """Percentile-bootstrap 95% interval of a mean paired difference (None for under 2)."""
    if len(differences) < 2:
        return None
    values = np.asarray(differences, dtype=np.float64)
    interval = bootstrap(
        lambda rows: float(values[rows].mean()),
        len(values),
        replicates=BOOTSTRAP_REPLICATES,
        seed=BOOTSTRAP_SEED,
    )
    return interval.low, interval.high


def _compare(scores: Sequence[NoduleMaskScore]) -> GroupComparison:
    network, grown = _pair(scores)
    where = [s for s in scores if s.grown_dice is not None]
    differences = [(s.grown_dice or 0.0) - (s.network_dice or 0.0) for s in where]
    interval = paired_interval(differences)
    errors = [
        abs(s.grown_mean_mm - s.diameter_mm) - abs(s.network_mean_mm - s.diameter_mm)
        for s in where
        if s.grown_mean_mm is not None and s.network_mean_mm is not None
    ]
    error_interval = paired_interval(errors)
    # Better: a higher Dice (interval above zero) and a diameter no worse (its interval not
    # above zero) -- the size estimate shows the diameter, the SEG the mask.
    better = (
        interval is not None
        and interval[0] > 0.0
        and (error_interval is None or error_interval[0] <= 0.0)
    )
    return GroupComparison(
        network=network,
        region_growing=grown,
        n_grown=len(where),
        network_dice_median_where_grown=_median([s.network_dice or 0.0 for s in where]),
        grown_dice_median_where_grown=_median([s.grown_dice or 0.0 for s in where]),
        grown_minus_network_dice=float(np.mean(differences)) if differences else None,
        grown_minus_network_dice_ci95=interval,
        grown_minus_network_abs_error_mm=float(np.mean(errors)) if errors else None,
        grown_minus_network_abs_error_mm_ci95=error_interval,
        region_growing_better=better,
    )


def summarize(scores: Sequence[NoduleMaskScore]) -> MaskQuality | None:
    """Both methods overall and per diameter group; None when no nodule was scored."""
    if not scores:
        return None
    network, grown = _pair(scores)
    diameter = [s.diameter_mm for s in scores]
    service = _agreement(
        [s.service_dice for s in scores], [s.service_mean_mm for s in scores], diameter
    )
    groups = {
        group_name(low, high): _compare(members)
        for low, high in _BOUNDS
        if (members := [s for s in scores if low <= s.diameter_mm < high])
    }
    by_branch, policy = _by_branch_diameter(scores)
    per_fold, nested = _policy_cross_validated(scores)
    return MaskQuality(
        n_nodules=len(scores),
        network=network,
        region_growing=grown,
        service=service,
        by_diameter=groups,
        region_growing_better_in=[g for g, c in groups.items() if c.region_growing_better],
        by_branch_diameter=by_branch,
        policy_region_growing_mm=policy,
        policy_cross_validated=nested,
        policy_per_fold_mm=per_fold,
    )


_BOUNDS = [*DIAMETER_GROUPS, (DIAMETER_GROUPS[-1][1], OPEN_END_MM)]


def _by_branch_diameter(
    scores: Sequence[NoduleMaskScore],
) -> tuple[dict[str, GroupComparison], list[tuple[float, float]]]:
    """The comparison by the branch's own diameter, and the ranges where growing is better."""
    by_branch: dict[str, GroupComparison] = {}
    policy: list[tuple[float, float]] = []
    for low, high in _BOUNDS:
        members = [
            s for s in scores if s.network_mean_mm is not None and low <= s.network_mean_mm < high
        ]
        if members:
            by_branch[group_name(low, high)] = compared = _compare(members)
            if compared.region_growing_better:
                policy.append((low, high))
    return by_branch, policy


def _policy_cross_validated(
    scores: Sequence[NoduleMaskScore],
) -> tuple[list[list[tuple[float, float]]] | None, MethodAgreement | None]:
    """Each fold under the policy its other folds support; (None, None) without folds."""
    folds = sorted({s.fold for s in scores if s.fold is not None})
    if len(folds) < 2 or any(s.fold is None for s in scores):
        return None, None
    per_fold, dice, mean_mm, diameter = [], [], [], []
    for fold in folds:
        _, ranges = _by_branch_diameter([s for s in scores if s.fold != fold])
        per_fold.append(ranges)
        for s in (s for s in scores if s.fold == fold):
            d, m = s.under_policy(ranges)
            dice.append(d)
            mean_mm.append(m)
            diameter.append(s.diameter_mm)
    return per_fold, _agreement(dice, mean_mm, diameter)
