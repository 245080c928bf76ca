"""``report.md`` and the figures of an evaluation: the tables beside the paper's values."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt

from indexer.build.maps import embedding_map
from indexer.evaluate import figures, markdown
from indexer.evaluate.baselines import BASELINE_NAMES, BASELINES, MEASURED_NOTE, SEARCH_ROWS
from indexer.evaluate.loading import CatalogNodules, EvaluateOptions, LoadedCatalogue
from indexer.evaluate.protocol import ALIKE_METRICS, KS, LABEL_METRICS
from indexer.evaluate.records import (
    EvaluationReport,
    FeatureResult,
    FpReduction,
    RetrievalSection,
)
from indexer.evaluate.scores import (
    Neighbors,
)


def _caption(nodules: CatalogNodules, r: int, prefix: str) -> str:
    four = nodules.label_4class[r]
    mean = nodules.mean_malignancy[r]
    ratings = "/".join(str(v) for v in nodules.ratings[r]) or "-"
    label = "unlabelled" if np.isnan(four) else f"class {int(four)}"
    mean_text = f"{mean:.1f}" if mean is not None else "-"
    return f"{prefix}#{int(nodules.ids[r])} {label}\nmean {mean_text} ({ratings})"


def _montage_rows(
    nodules: CatalogNodules,
    rows: npt.NDArray[np.int64],
    patches: npt.NDArray[np.float32],
    neighbors: Neighbors,
    count: int,
) -> list[list[figures.Panel]]:
    """Queries spread over benign and malignant, each with its 4 nearest neighbours."""
    y = nodules.label_binary[rows]
    picks: list[int] = []
    for cls in (0.0, 1.0):
        members = np.flatnonzero(y == cls)
        want = (count + 1) // 2 if cls == 0.0 else count - len(picks)
        if len(members):
            step = max(1, len(members) // max(1, want))
            picks.extend(members[::step][:want].tolist())
    center = patches.shape[1] // 2
    out = []
    for q in picks:
        r = int(rows[q])
        panels = [
            figures.Panel(patches[q, center], _caption(nodules, r, "query "), _as_class(nodules, r))
        ]
        for j, s in zip(neighbors.index[q, :4], neighbors.similarity[q, :4], strict=True):
            if j < 0:
                continue
            nr = int(rows[j])
            panels.append(
                figures.Panel(
                    patches[j, center],
                    _caption(nodules, nr, f"sim {s:.2f} "),
                    _as_class(nodules, nr),
                )
            )
        out.append(panels)
    return out


def _as_class(nodules: CatalogNodules, r: int) -> int | None:
    value = nodules.label_4class[r]
    return None if np.isnan(value) else int(value)


def write_figures(
    source: LoadedCatalogue,
    patches: npt.NDArray[np.float32],
    neighbors: Neighbors,
    out_dir: Path,
    options: EvaluateOptions,
) -> str:
    """The t-SNE map and the neighbour montage; returns where the map came from."""
    nodules = source.nodules
    map_xy, map_source = nodules.map_xy, "catalogue"
    if map_xy is None:
        map_xy, map_source = embedding_map(nodules.vectors, seed=options.seed), "computed"
    if map_xy is not None:
        figures.tsne_png(
            map_xy,
            [None if np.isnan(v) else int(v) for v in nodules.label_4class],
            out_dir / "tsne.png",
            f"t-SNE of {len(nodules.ids)} nodule embeddings ({source.version})",
        )
    montage = _montage_rows(nodules, nodules.labelled, patches, neighbors, options.montage_queries)
    figures.montage_png(
        montage,
        out_dir / "neighbors.png",
        "queries (left) and their 4 nearest neighbours; frame colour: malignancy 1 2 4 5",
    )
    return map_source if map_xy is not None else "none"


_fmt = markdown.fmt


def _recall_rows(section: RetrievalSection, kind: str, name: str) -> str:
    cells = []
    for k in KS:
        counts = section.recall_counts[kind][str(k)]
        value = section.recall_at_k[kind][str(k)]
        cells.append(f"{_fmt(value)} ({counts.hits}/{counts.queries})")
    return f"| {name} | " + " | ".join(cells) + " |"


def _vote_row(section: RetrievalSection, name: str) -> str:
    acc, (al, ah) = section.vote_accuracy, section.vote_accuracy_ci95
    auc, (ul, uh) = section.auc, section.auc_ci95
    return (
        f"| {name} | {_fmt(acc)} [{_fmt(al)}, {_fmt(ah)}] | {_fmt(auc)} [{_fmt(ul)}, {_fmt(uh)}] |"
    )


def _tables(
    report: EvaluationReport, head: RetrievalSection, bases: Mapping[str, RetrievalSection]
) -> list[str]:
    lines = []
    for kind, title in (("binary", "binary (1-2 vs 4-5)"), ("four_class", "4-class (1/2/4/5)")):
        lines += [
            f"**Recall@k, {title}** — value (hits/queries)",
            "",
            "| features | k=1 | k=2 | k=3 | k=4 |",
            "|---|---|---|---|---|",
            _recall_rows(head, kind, _head_name(report)),
            *(_recall_rows(bases[name], kind, BASELINE_NAMES[name]) for name in _shown(bases)),
            "| paper (real LUNA16, 679 nodules) | "
            + " | ".join(f"{report.paper[kind][str(k)]:.3f}" for k in KS)
            + " |",
            "",
        ]
    lines += [
        f"**kNN vote (k={head.vote_k})** — value [bootstrap 95% interval]",
        "",
        "| features | majority accuracy | AUC of weighted probability |",
        "|---|---|---|",
        _vote_row(head, _head_name(report)),
        *(_vote_row(bases[name], BASELINE_NAMES[name]) for name in _shown(bases)),
        "",
    ]
    named = [(_head_name(report), head.looks_alike)]
    named += [(BASELINE_NAMES[name], bases[name].looks_alike) for name in _shown(bases)]
    return lines + markdown.looks_alike_lines(named)


def _shown(bases: Mapping[str, object]) -> list[str]:
    """The rows a report has, in order: the search space's two, then the baselines."""
    return [name for name in (*SEARCH_ROWS, *BASELINES) if name in bases]


def _head_name(report: EvaluationReport) -> str:
    """What the catalogue's stored vectors are."""
    if report.search_blocks is None:
        return "FP-reduction network"
    shown = ", ".join(f"{block} {weight:.2f}" for block, weight in report.search_blocks.items())
    return f"search vector ({shown})"


def _paired_lines(report: EvaluationReport) -> list[str]:
    """The paired tables and the headline: which baselines the network beats, and on what."""
    return markdown.paired_lines(
        report.paired_vs_baselines, BASELINE_NAMES, LABEL_METRICS, ALIKE_METRICS
    )


def _other_rule(section: FeatureResult, exclude_same_patient: bool) -> RetrievalSection:
    other = section.same_patient_included if exclude_same_patient else section.same_patient_excluded
    if other is None:
        raise ValueError("a section lacks the other same-patient rule")
    return other


def render_markdown(report: EvaluationReport) -> str:
    """``report.md``: the tables beside the paper's values, then the run's facts."""
    excluded = report.exclude_same_patient
    headline, other = ("excluded", "included") if excluded else ("included", "excluded")
    bases = report.baselines
    counts = report.class_counts
    lines = [
        f"# Similar-nodule retrieval — catalogue {report.index_version}",
        "",
        f"{report.n_queries} labelled nodules of {report.n_nodules} "
        f"({report.n_patients} patients), leave-one-out; neighbours of the same patient "
        f"{headline}. Label counts: binary {counts['binary']}, 4-class "
        f"{counts['four_class']}. Model {report.model_fingerprint[:12]}.",
        "",
        MEASURED_NOTE,
        "",
    ]
    lines += _tables(report, report, bases)
    lines += markdown.mask_quality_lines(report.mask_quality)
    lines += _paired_lines(report)
    lines += [f"## Same-patient neighbours {other}", ""]
    lines += _tables(
        report,
        _other_rule(report, excluded),
        {name: _other_rule(bases[name], excluded) for name in _shown(bases)},
    )
    lines += _fp_reduction_lines(report.fp_reduction)
    beats = report.network_beats_baselines_binary_recall_at_1
    verdict = (
        "is above every baseline"
        if all(beats.values())
        else "is NOT above "
        + " and ".join(BASELINE_NAMES[name] for name, ok in beats.items() if not ok)
    )
    lines += [
        f"On binary Recall@1 the network's point value {verdict} (whether that holds beyond "
        "chance is the paired table's question). The paper's values come from real LUNA16; "
        "on a synthetic set they are a reference, not a target.",
        "",
        f"Stored vectors vs re-embedded now: max |diff| "
        f"{report.stored_vectors_max_abs_diff:.2e}. Figures: `tsne.png` (map: "
        f"{report.map['source']}), `neighbors.png`.",
        "",
    ]
    return "\n".join(lines)


def _fp_reduction_lines(fpr: FpReduction) -> list[str]:
    froc = fpr.froc
    lines = ["## FP reduction (model card)", ""]
    if not froc:
        return [*lines, "The model card records no FROC.", ""]
    rates = " | ".join(f"{r:g}" for r in froc["fp_per_scan"])
    sens = " | ".join(_fmt(s) for s in froc["sensitivity"])
    return [
        *lines,
        f"Validation AUC {_fmt(fpr.val_auc)}; FROC on {froc['n_scans']} held-out scans "
        f"({froc['n_nodules']} nodules), CPM **{_fmt(froc['cpm'])}**.",
        "",
        f"| FPs/scan | {rates} |",
        "|---" * (len(froc["fp_per_scan"]) + 1) + "|",
        f"| sensitivity | {sens} |",
        "",
    ]
