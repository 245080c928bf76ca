"""Patient-grouped cross-validation of a training recipe on a LUNA16-layout nodule set.

The set's LUNA16 subsets are grouped into folds (patients are hashed into subsets, so no patient
is in two folds). For fold f, a model trained without fold f's subsets (or one fixed model for
all folds) embeds every labelled nodule; each of fold f's nodules then queries all nodules of
other patients with those vectors. So a nodule is never a query to a model that saw its patient,
while its neighbours come from a catalogue the model may have trained on, as in service.

The pooled queries of all folds are scored like ``evaluate`` does (Recall@1..4, the kNN vote,
bootstrap intervals, whether the neighbours look alike) with the baselines of the same run and
the paired network-minus-baseline intervals (patients resampled).

Embedding options that do not change the weights (the size-profile weight) can be chosen inside
the folds: for fold f, each candidate is scored on the *other* folds' queries (their own models'
vectors), and the best one is applied to fold f. The reported number then never saw the choice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from indexer.crossval.search_vectors import SearchInputs, search_report
from indexer.data.luna import find_series
from indexer.data.synth.heldout import HELDOUT_PATIENTS
from indexer.evaluate.alike import RatedRows, reader_matrix
from indexer.evaluate.baselines import BASELINES, baseline_searches
from indexer.evaluate.loading import (
    CatalogNodules,
    CutRows,
    EvaluateOptions,
    EvaluationError,
    NeighborSearch,
    cut_patches,
    rows_network_descriptors,
)
from indexer.evaluate.mask_quality import NoduleMaskScore
from indexer.evaluate.mask_quality import summarize as summarize_masks
from indexer.evaluate.protocol import evaluate_features, paired_difference
from indexer.evaluate.scores import Neighbors, hits_at_1, loo_neighbors
from indexer.labels.build import read_labels
from indexer.search.data import RatedCut, RatedSet, RatedSetError, cut_rated, load_rated
from model.nn.checkpoint import load_model
from model.nn.embedder import Embedder
from model.nn.network import NoduleNet
from model.preprocessing import PatchSpec

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


class CrossValidationError(ValueError):
    """The set cannot be cross-validated (no labels, too few folds, unreadable scans)."""


def fold_subsets(subsets: Sequence[str], n_folds: int) -> list[tuple[str, ...]]:
    """The subsets of each fold: sorted by number, dealt round-robin (subset0, 5 in fold 0...)."""
    ordered = sorted(subsets, key=lambda s: (len(s), s))
    if not 2 <= n_folds <= len(ordered):
        raise CrossValidationError(f"{n_folds} folds need 2..{len(ordered)} subsets")
    return [tuple(ordered[i::n_folds]) for i in range(n_folds)]


@dataclass
class LabelledNodules:
    """The labelled nodules of a set, with each one's subset (its fold)."""

    nodules: CatalogNodules
    subset: list[str]

    def fold_of(self, folds: Sequence[tuple[str, ...]]) -> npt.NDArray[np.int64]:
        """Fold number of every nodule."""
        where = {s: f for f, members in enumerate(folds) for s in members}
        return np.array([where[s] for s in self.subset], dtype=np.int64)


def load_labelled(data_dir: Path) -> LabelledNodules:
    """``labels.csv`` nodules with a binary label, in file order, and their scans.

    Never the held-out patients' (``indexer.data.synth.heldout``): nothing is chosen on them.
    """
    series = find_series(data_dir)
    labels = [
        n
        for n in read_labels(data_dir / "labels.csv")
        if n.label.label_binary is not None
        and n.series_uid in series
        and n.patient_id not in HELDOUT_PATIENTS
    ]
    if len(labels) < 2:
        raise CrossValidationError(f"{data_dir}: fewer than 2 labelled nodules with a scan")
    n = len(labels)
    nodules = CatalogNodules(
        ids=np.arange(n, dtype=np.int64),
        series_uid=[x.series_uid for x in labels],
        source_path={x.series_uid: series[x.series_uid] for x in labels},
        patient_id=[x.patient_id for x in labels],
        center_xyz=[x.center_xyz for x in labels],
        diameter_mm=np.array([x.diameter_mm for x in labels], dtype=np.float64),
        ratings=[x.label.ratings for x in labels],
        reader_ratings=[reader_matrix(x.characteristics) for x in labels],
        mean_malignancy=[x.label.mean_malignancy for x in labels],
        label_binary=np.array([x.label.label_binary for x in labels], dtype=np.float64),
        label_4class=np.array([x.label.label_4class for x in labels], dtype=np.float64),
        vectors=np.zeros((n, 0), dtype=np.float32),
        map_xy=None,
    )
    return LabelledNodules(nodules, [series[x.series_uid].parent.name for x in labels])


def _cut_all(nodules: CatalogNodules, embedder: Embedder, workers: int) -> CutRows:
    """Every nodule's patch, density and descriptors (``cut_patches``), in nodule order."""
    try:
        return cut_patches(nodules, np.arange(len(nodules.ids), dtype=np.int64), embedder, workers)
    except EvaluationError as e:
        raise CrossValidationError(str(e)) from None


def with_size_profile(embedder: Embedder, weight: float) -> Embedder:
    """The same weights with another size-profile weight (a different card; no training)."""
    arch = embedder.card.arch.model_copy(update={"size_profile_weight": weight})
    network = NoduleNet(arch)
    network.load_state_dict(embedder.network.state_dict(), strict=True)
    card = embedder.card.model_copy(update={"arch": arch, "embedding_dim": arch.embedding_dim})
    return Embedder(network, card, str(embedder.device), batch_size=embedder.batch_size)


def cv_search(vectors_by_fold: Sequence[F32], fold: npt.NDArray[np.int64]) -> NeighborSearch:
    """Each nodule's neighbours by the vectors of its own fold's model."""

    def search(patients: Sequence[str | None] | None, k: int) -> Neighbors:
        index = np.full((len(fold), k), -1, dtype=np.int64)
        similarity = np.full((len(fold), k), -np.inf)
        for f, vectors in enumerate(vectors_by_fold):
            rows = fold == f
            found = loo_neighbors(vectors, k, patients)
            index[rows], similarity[rows] = found.index[rows], found.similarity[rows]
        return Neighbors(index, similarity)

    return search


def binary_hits(
    labelled: LabelledNodules,
    vectors: F32,
    rows: npt.NDArray[np.bool_],
    hidden: npt.NDArray[np.bool_],
) -> float:
    """Binary Recall@1 of ``rows`` as queries (other patients' neighbours), by ``vectors``.

    The ``hidden`` nodules (the fold a choice is made for) are neither queries nor neighbours.
    """
    nodules = labelled.nodules
    keep = np.flatnonzero(~hidden)
    patients = [nodules.patient_id[i] for i in keep]
    found = loo_neighbors(vectors[keep], 1, patients)
    hits = hits_at_1(nodules.label_binary[keep], found)
    asked = rows[keep]
    return float(hits[asked].mean()) if asked.any() else float("nan")


@dataclass
class FoldVectors:
    """One fold's model and its vectors of every nodule, for each candidate embedding option."""

    model_dir: Path
    by_weight: dict[float, F32] = field(default_factory=dict)


def choose_weights(
    labelled: LabelledNodules, folds: list[FoldVectors], fold: npt.NDArray[np.int64]
) -> list[float]:
    """For each fold, the size-profile weight that scored best on the other folds' queries."""
    weights = sorted(folds[0].by_weight)
    chosen = []
    for f in range(len(folds)):
        scores = []
        for w in weights:
            others = [
                binary_hits(labelled, folds[g].by_weight[w], fold == g, fold == f)
                for g in range(len(folds))
                if g != f
            ]
            scores.append(float(np.mean(others)))
        chosen.append(weights[int(np.argmax(scores))])
    return chosen


ModelForFold = Callable[[int, tuple[str, ...]], Path]
"""Returns the model folder to use for fold f (trained without its subsets, or a fixed one)."""


@dataclass(frozen=True)
class CrossValOptions:
    """Options of one cross-validation."""

    n_folds: int = 5
    size_profile_weights: tuple[float, ...] = (0.0,)
    search_blocks: bool = False
    """Also choose the search vector's blocks by nested CV and score the choice
    (``indexer.crossval.search_vectors``)."""
    evaluate: EvaluateOptions = field(
        default_factory=lambda: EvaluateOptions(exclude_same_patient=True)
    )


@dataclass
class FoldPass:
    """What one pass over the fold models gives."""

    cut: CutRows
    first: Embedder
    per_fold: list[FoldVectors]
    mask_scores: list[NoduleMaskScore]
    rated_cut: RatedCut | None
    """With ``search_blocks``: every rated nodule's patch and profile (the first model's spec)."""
    search_features: list[F32]
    """With ``search_blocks``: each fold model's features of every rated nodule."""


def _fold_pass(
    labelled: LabelledNodules,
    folds: list[tuple[str, ...]],
    model_for_fold: ModelForFold,
    options: CrossValOptions,
    rated: RatedSet | None,
) -> FoldPass:
    """Train (or take) each fold's model; embed, and measure its fold's nodules with it.

    With ``rated``: also cut every rated nodule once and embed it with each fold's model.

    Raises:
        CrossValidationError: the fold models cut different patches, or a scan is unreadable.
    """
    nodules = labelled.nodules
    fold = labelled.fold_of(folds)
    out: FoldPass | None = None
    for f, members in enumerate(folds):
        model_dir = model_for_fold(f, members)
        network, card = load_model(model_dir, "cpu")
        embedder = Embedder(network, card, options.evaluate.device, batch_size=64)
        if out is None:
            workers = options.evaluate.workers
            cut = _cut_all(nodules, embedder, workers)
            out = FoldPass(
                cut, embedder, [], [], _cut_rated(rated, card.preprocessing, workers), []
            )
        elif card.preprocessing != out.first.card.preprocessing:
            raise CrossValidationError("the fold models cut different patches")
        if embedder.segments:
            # The fold's nodules are measured by the mask branch of the model that did not
            # train on them (their masks may have trained the other folds' models).
            held = np.flatnonzero(fold == f).astype(np.int64)
            measured = rows_network_descriptors(nodules, held, out.cut.patches[held], embedder)
            out.cut.descriptors[held] = measured.descriptors
            out.mask_scores.extend(replace(s, fold=f) for s in measured.mask_scores)
        vectors = FoldVectors(model_dir)
        for w in options.size_profile_weights:
            vectors.by_weight[w] = with_size_profile(embedder, w).embed_patches(out.cut.patches)
        out.per_fold.append(vectors)
        if out.rated_cut is not None:
            out.search_features.append(embedder.embed_patches(out.rated_cut.patches))
    if out is None:
        raise CrossValidationError("no folds")
    return out


def _cut_rated(rated: RatedSet | None, spec: PatchSpec, workers: int) -> RatedCut | None:
    """Every rated nodule's patch and profile (None without a rated set)."""
    if rated is None:
        return None
    try:
        return cut_rated(rated, spec, workers)
    except RatedSetError as e:
        raise CrossValidationError(str(e)) from None


def cross_validate(
    data_dir: Path, model_for_fold: ModelForFold, options: CrossValOptions
) -> dict[str, object]:
    """Pooled patient-grouped CV scores of the network and the baselines (module docstring)."""
    t0 = time.perf_counter()
    labelled = load_labelled(data_dir)
    nodules = labelled.nodules
    # Folds are made of the subsets holding labelled nodules; any other subset (crops of
    # whole CTs kept apart, real-set --background-always-trains) trains every fold.
    folds = fold_subsets(sorted(set(labelled.subset)), options.n_folds)
    fold = labelled.fold_of(folds)
    if options.search_blocks and len(folds) < 3:
        raise CrossValidationError(
            "--search-blocks needs at least 3 folds (the inner folds choose, the outer reports)"
        )
    rated = load_rated(data_dir) if options.search_blocks else None
    if rated is not None and [rated.patient_id[i] for i in rated.labelled] != list(
        nodules.patient_id
    ):
        raise CrossValidationError("labels.csv changed while it was read")
    passed = _fold_pass(labelled, folds, model_for_fold, options, rated)
    cut, first, per_fold = passed.cut, passed.first, passed.per_fold
    chosen = (
        choose_weights(labelled, per_fold, fold)
        if len(options.size_profile_weights) > 1
        else [options.size_profile_weights[0]] * len(folds)
    )
    network_search = cv_search(
        [v.by_weight[w] for v, w in zip(per_fold, chosen, strict=True)], fold
    )
    rows = np.arange(len(nodules.ids), dtype=np.int64)
    opts = options.evaluate
    rated_rows = RatedRows.of(nodules.reader_ratings, nodules.diameter_mm)
    network_section, mine = evaluate_features(network_search, nodules, rows, opts, rated_rows)
    searches = baseline_searches(cut, first, nodules.diameter_mm, opts.seed)
    baselines, paired, found_by = {}, {}, {}
    for name in BASELINES:
        baselines[name], found = evaluate_features(searches[name], nodules, rows, opts, rated_rows)
        found_by[name] = found
        paired[name] = paired_difference(mine, found, nodules, rows, rated_rows, opts)
    report: dict[str, object] = {
        "protocol": "patient-grouped cross-validation: each fold's nodules query all other "
        "patients' nodules with the vectors of a model that did not train on the fold",
        "folds": [list(m) for m in folds],
        "fold_models": [str(v.model_dir) for v in per_fold],
        "size_profile_weight_per_fold": chosen,
        "n_queries": len(rows),
        "n_patients": len(set(nodules.patient_id)),
        "network": network_section.model_dump(),
        "baselines": {name: section.model_dump() for name, section in baselines.items()},
        "paired_vs_baselines": {
            name: {metric: d.model_dump() for metric, d in by_metric.items()}
            for name, by_metric in paired.items()
        },
    }
    if rated is not None and passed.rated_cut is not None:
        inputs = SearchInputs(rated, passed.rated_cut, passed.search_features, folds, cut, first)
        report["search"] = search_report(inputs, nodules, fold, mine, found_by, opts, rated_rows)
    # Each fold's masks came from the model that did not train on the fold (its masks may
    # have trained the other folds' models).
    quality = summarize_masks(passed.mask_scores)
    report["mask_quality"] = quality.model_dump() if quality is not None else None
    report["elapsed_s"] = time.perf_counter() - t0
    return report
