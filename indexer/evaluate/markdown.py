"""Markdown tables shared by ``report.md`` (evaluate) and ``cv.md`` (crossval).

The looks-alike tables (rating differences, nDCG, Recall@1 within diameter tertiles) and the
paired network-minus-baseline tables with the headline sentence of what the network beats.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from indexer.evaluate.alike import RATED, TERTILES
from indexer.evaluate.mask_quality import (
    GroupComparison,
    MaskQuality,
    MethodAgreement,
    group_name,
)
from indexer.evaluate.records import LooksAlike, PairedDifference

#: How each paired metric is named in the tables.
PAIRED_NAMES = {
    "binary_recall_at_1": "binary Recall@1",
    "four_class_recall_at_1": "4-class Recall@1",
    "vote_auc": "vote AUC",
    "rating_difference_top1": "rating difference, top 1 (lower is better)",
    "ndcg_at_4": "nDCG@4",
    **{f"binary_recall_at_1_{t}": f"binary Recall@1, {t} third" for t in TERTILES},
}
#: Column titles of the 8 characteristics.
_RATED_TITLES = {
    "subtlety": "subtlety",
    "internalStructure": "internal structure",
    "calcification": "calcification",
    "sphericity": "sphericity",
    "margin": "margin",
    "lobulation": "lobulation",
    "spiculation": "spiculation",
    "texture": "texture",
}


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for a table; ``n/a`` for None and NaN."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def looks_alike_lines(named: Sequence[tuple[str, LooksAlike | None]]) -> list[str]:
    """The rating-difference / nDCG table and the diameter-tertile table, one row per search."""
    known = [(name, a) for name, a in named if a is not None]
    if not known:
        return []
    first = known[0][1]
    low, high = first.diameter_tertiles_mm
    k = first.k
    if first.n_rated_queries == 0:
        lines = ["No query carries the readers' characteristic ratings: no rating metrics.", ""]
    else:
        lines = [
            f"**Do the neighbours look alike?** — mean |rating difference| between a query and "
            f"its nearest neighbour, per characteristic (LIDC scale units, lower is better); its "
            f"mean over the 8 for the nearest and the {k} nearest; nDCG with per-reader rating "
            f"relevance (higher is better). {first.n_rated_queries} rated queries.",
            "",
            "| features | "
            + " | ".join(_RATED_TITLES[c] for c in RATED)
            + f" | mean, top 1 | mean, top {k} | nDCG@1 | nDCG@{k} |",
            "|---" * (len(RATED) + 5) + "|",
        ]
        for name, a in known:
            cells = [fmt(a.rating_difference_top1[c], 2) for c in RATED]
            cells += [
                fmt(a.rating_difference_top1["mean"]),
                fmt(a.rating_difference_top_k["mean"]),
                fmt(a.ndcg_at_k.get("1")),
                fmt(a.ndcg_at_k.get(str(k))),
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        f"**Recall@1 within diameter tertiles** (small < {fmt(low, 1)} mm <= medium < "
        f"{fmt(high, 1)} mm <= large) — binary / 4-class (hits/queries)",
        "",
        "| features | " + " | ".join(TERTILES) + " |",
        "|---" * (len(TERTILES) + 1) + "|",
    ]
    for name, a in known:
        cells = []
        for t in TERTILES:
            b, f = (a.recall_at_1_by_diameter_tertile[t][kind] for kind in ("binary", "four_class"))
            share_b = b.hits / b.queries if b.queries else float("nan")
            share_f = f.hits / f.queries if f.queries else float("nan")
            cells.append(f"{fmt(share_b)} / {fmt(share_f)} ({b.hits}/{b.queries})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def paired_table(
    paired: Mapping[str, Mapping[str, PairedDifference]],
    names: Mapping[str, str],
    metrics: Sequence[str],
) -> list[str]:
    """One table of paired differences: a row per baseline in ``names``, a column per metric."""
    lines = [
        "| baseline | " + " | ".join(PAIRED_NAMES[m] for m in metrics) + " |",
        "|---" * (len(metrics) + 1) + "|",
    ]
    for name, title in names.items():
        if name not in paired:
            continue
        cells = []
        for metric in metrics:
            d = paired[name][metric]
            mark = " **beats**" if d.beats else ""
            cells.append(f"{d.difference:+.3f} [{fmt(d.ci95[0])}, {fmt(d.ci95[1])}]{mark}")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def paired_lines(
    paired: Mapping[str, Mapping[str, PairedDifference]],
    names: Mapping[str, str],
    label_metrics: Sequence[str],
    alike_metrics: Sequence[str],
    subject: str = "network",
) -> list[str]:
    """The two paired tables (labels; looks alike) and the headline of what ``subject`` beats.

    ``names``: baseline key -> its title, in table order.
    """
    lines = [
        f"## {subject[:1].upper()}{subject[1:]} minus each baseline (paired bootstrap over "
        "patients, 95% interval)",
        "",
        *paired_table(paired, names, label_metrics),
        f"Do the neighbours look alike, {subject} minus baseline:",
        "",
        *paired_table(paired, names, alike_metrics),
    ]
    verdicts = []
    for name, title in names.items():
        if name not in paired:
            continue
        won = [PAIRED_NAMES[m] for m in (*label_metrics, *alike_metrics) if paired[name][m].beats]
        verdicts.append(f"{title}: " + (", ".join(won) if won else "on nothing"))
    lines += [
        f"The {subject} beats (the interval of the difference on its better side of "
        "zero) — " + "; ".join(verdicts) + ".",
        "",
    ]
    return lines


def _agreement_cells(a: MethodAgreement) -> str:
    return (
        f"{fmt(a.share_with_mask, 2)} | {fmt(a.dice_median)} | {fmt(a.dice_median_of_masked)} | "
        f"{fmt(a.diameter_pearson_r, 2)} | {fmt(a.diameter_mean_abs_diff_mm, 2)} |"
    )


def _where_grown(group: str, c: GroupComparison) -> str:
    if c.n_grown == 0:
        return f"{group}: region growing refuses all {c.network.n}"
    interval = c.grown_minus_network_dice_ci95
    shown = "n/a" if interval is None else f"[{fmt(interval[0])}, {fmt(interval[1])}]"
    error = c.grown_minus_network_abs_error_mm_ci95
    error_shown = "n/a" if error is None else f"[{fmt(error[0], 2)}, {fmt(error[1], 2)}]"
    return (
        f"{group} (n={c.n_grown}) {fmt(c.grown_dice_median_where_grown)} vs "
        f"{fmt(c.network_dice_median_where_grown)}, {fmt(c.grown_minus_network_dice)} {shown}, "
        f"diameter error {fmt(c.grown_minus_network_abs_error_mm, 2)} mm {error_shown}"
    )


def mask_quality_lines(quality: MaskQuality | None) -> list[str]:
    """The service's masks against the reference masks, beside region growing.

    Overall and by diameter, and where region growing measures better (nothing when unmeasured).
    """
    if quality is None:
        return []
    lines = [
        f"**The nodule's mask** ({quality.n_nodules} nodules with a reference mask: "
        f"{quality.reference}; Dice on {quality.grid}; a refusal counts 0 in the median; "
        "diameter: mean of the axial axes vs the catalogue's)",
        "",
        "| method | group | with a mask | median Dice | median Dice, masked | diameter r "
        "| mean abs diff (mm) |",
        "|---|---|---|---|---|---|---|",
        f"| mask branch | all | {_agreement_cells(quality.network)}",
        f"| region growing | all | {_agreement_cells(quality.region_growing)}",
        f"| the service (the card's mask policy applied) | all | "
        f"{_agreement_cells(quality.service)}",
    ]
    if quality.policy_cross_validated is not None:
        lines.append(
            "| the branch under the mask policy chosen on the other folds | all | "
            f"{_agreement_cells(quality.policy_cross_validated)}"
        )
    for group, c in quality.by_diameter.items():
        lines += [
            f"| mask branch | {group} | {_agreement_cells(c.network)}",
            f"| region growing | {group} | {_agreement_cells(c.region_growing)}",
        ]
    where = ", ".join(quality.region_growing_better_in) or "nowhere"
    ranges = quality.policy_region_growing_mm
    policy = ", ".join(group_name(low, high) for low, high in ranges) or "none"
    lines += [
        "",
        "Where region growing answers: its median Dice vs the branch's on the same nodules, and "
        "the mean paired differences (region growing minus branch) [95% bootstrap] of the Dice "
        "and of the absolute diameter error, by the catalogue's diameter: "
        + "; ".join(_where_grown(group, c) for group, c in quality.by_diameter.items())
        + ". Region growing measures better (a Dice interval above zero, a diameter-error "
        f"interval not above zero): {where}.",
        "",
        "The same by the branch's own diameter (what the service knows of a query): "
        + "; ".join(_where_grown(group, c) for group, c in quality.by_branch_diameter.items())
        + f". The mask policy this supports (region growing where the branch measures): {policy}.",
        "",
    ]
    return lines


def closer_characteristics(mine: LooksAlike, other: LooksAlike) -> list[str]:
    """The characteristics whose top-1 rating difference is smaller for ``mine``."""
    return [
        name
        for name, value in mine.rating_difference_top1.items()
        if name != "mean" and value < other.rating_difference_top1.get(name, float("nan"))
    ]
