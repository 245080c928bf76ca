"""``nodule-index evaluate``: the paper's Table 1 protocol on a catalogue version, with baselines.

What is measured (``docs/protocol.md``):

* leave-one-out search over the labelled nodules of the catalogue (each queries all the others,
  exact cosine search on the stored vectors — the vectors the service searches);
* Recall@1..4 for the binary (1-2 vs 4-5) and 4-class (1/2/4/5) labels, with hits / queries;
* the service's kNN vote (``model.clinical.vote``): majority accuracy and the AUC of the
  similarity-weighted malignant probability, with percentile-bootstrap 95% intervals over queries;
* all of it again with neighbours of the query's own patient excluded;
* the same numbers for three baselines on the same nodules in the same run: raw intensities (the
  windowed patch from the one patch function, 2x average-pooled, flattened, L2-normalised), the
  same architecture with random weights, and the annotated diameter alone (nearest by
  ``diameter_mm``: radiologists' malignancy ratings follow size closely);
* the FP-reduction FROC / CPM recorded in the model card.

Files: ``report.json``, ``report.md`` (the tables beside the paper's values), ``tsne.png`` (the
catalogue's 2-D map coloured by malignancy) and ``neighbors.png`` (queries and their top 4).

The stages are modules of their own: ``loading`` (the catalogue, patches, masks), ``baselines``,
``protocol`` (the statistics) and ``render`` (``report.md`` and the figures); ``evaluate`` runs
them in order and writes the files.
"""

from __future__ import annotations

import logging
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from indexer.evaluate.baselines import BASELINES
from indexer.evaluate.loading import (
    EvaluateOptions,
    LoadedCatalogue,
    catalogue_embedder,
    cut_patches,
    read_catalogue,
)
from indexer.evaluate.mask_quality import (
    MaskQuality,
)
from indexer.evaluate.mask_quality import summarize as summarize_masks
from indexer.evaluate.protocol import LABEL_KINDS, PAPER_RECALL, Comparison, compare
from indexer.evaluate.records import (
    EvaluationReport,
    FpReduction,
)
from indexer.evaluate.render import render_markdown, write_figures
from indexer.version import code_version
from model.nn.card import ModelCard
from model.store.layout import write_json_atomic

logger = logging.getLogger(__name__)


def _counts(values: npt.NDArray[np.float64]) -> dict[str, int]:
    known = values[~np.isnan(values)].astype(int)
    return {str(v): int((known == v).sum()) for v in sorted(set(known.tolist()))}


def assemble_report(
    source: LoadedCatalogue,
    card: ModelCard,
    found: Comparison,
    drift: float,
    map_source: str,
    options: EvaluateOptions,
    elapsed_s: float,
    mask_quality: MaskQuality | None = None,
) -> EvaluationReport:
    """``report.json``'s record."""
    nodules, rows, training = source.nodules, source.nodules.labelled, card.training
    froc = training.froc.model_dump(mode="json") if training and training.froc else None
    network_r1 = found.network.recall_at_k["binary"]["1"]
    beats = {
        name: network_r1 > found.baselines[name].recall_at_k["binary"]["1"] for name in BASELINES
    }
    rule = options.label_rule
    data_fingerprint = source.manifest.data_fingerprint
    return EvaluationReport(
        **dict(found.network),
        index_version=source.version,
        model_fingerprint=card.fingerprint,
        created_at=datetime.now(UTC).isoformat(),
        code_version=code_version(),
        machine={"platform": platform.platform(), "python": platform.python_version()},
        protocol="leave-one-out over the labelled nodules, exact cosine search",
        exclude_same_patient=options.exclude_same_patient,
        label_rule=rule.model_dump(mode="json") if rule else "as stored in the catalogue",
        n_nodules=len(nodules.ids),
        n_queries=len(rows),
        n_patients=len({nodules.patient_id[r] for r in rows.tolist()}),
        class_counts={
            "binary": _counts(nodules.label_binary[rows]),
            "four_class": _counts(nodules.label_4class[rows]),
        },
        baselines=found.baselines,
        paired_vs_baselines=found.paired,
        network_beats_baselines_binary_recall_at_1=beats,
        mask_quality=mask_quality,
        search_blocks=card.search.shares() if card.search is not None else None,
        paper={kind: {str(k): v for k, v in PAPER_RECALL[kind].items()} for kind in LABEL_KINDS},
        fp_reduction=FpReduction(
            val_auc=training.metrics.get("val_auc") if training else None,
            froc=froc,
            source="model card (held-out subsets of training)",
        ),
        stored_vectors_max_abs_diff=drift,
        map={"source": map_source},
        files=["report.json", "report.md", "neighbors.png"]
        + (["tsne.png"] if map_source != "none" else []),
        data_fingerprint=None if data_fingerprint is None else str(data_fingerprint),
        elapsed_s=elapsed_s,
    )


def evaluate(
    index_dir: Path,
    out_dir: Path,
    version: str | None = None,
    options: EvaluateOptions | None = None,
) -> EvaluationReport:
    """Evaluate a catalogue version; writes the report files and returns ``report.json``'s record.

    Stages: read the catalogue -> load its model -> cut the patches -> check the stored vectors
    -> leave-one-out search (network and baselines) -> figures -> report.

    Raises:
        EvaluationError: fewer than 2 labelled nodules, unreadable scans, a missing model.
    """
    options = options or EvaluateOptions()
    t0 = time.perf_counter()
    source = read_catalogue(index_dir, version, options)
    nodules, rows = source.nodules, source.nodules.labelled
    embedder = catalogue_embedder(source, options.device)
    logger.info(
        "evaluating %s: %d labelled of %d nodules", source.version, len(rows), len(nodules.ids)
    )
    cut = cut_patches(nodules, rows, embedder, options.workers)
    patches = cut.patches
    stored = nodules.vectors[rows]
    # The stored vectors must be what the model gives for these patches today; a drift would
    # mean the catalogue and the model (or the data) no longer belong together.
    features = embedder.embed_patches(patches)  # once: the drift check and the feature rows
    fresh = embedder.compose(features, cut.profiles)
    drift = float(np.abs(fresh - stored).max()) if len(stored) else 0.0
    found = compare(nodules, rows, cut, embedder, options, features)
    out_dir.mkdir(parents=True, exist_ok=True)
    map_source = write_figures(source, patches, found.neighbors, out_dir, options)
    elapsed = time.perf_counter() - t0
    quality = summarize_masks(cut.mask_scores)
    report = assemble_report(
        source, embedder.card, found, drift, map_source, options, elapsed, quality
    )
    # model_dump (python mode): tuples become JSON lists and NaN stays NaN, as before.
    write_json_atomic(out_dir / "report.json", report.model_dump())
    (out_dir / "report.md").write_text(render_markdown(report), encoding="utf-8")
    logger.info("report in %s (%.1f s)", out_dir, report.elapsed_s)
    return report
