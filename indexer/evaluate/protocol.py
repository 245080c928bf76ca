"""The paper's protocol, for the network and every baseline on the same queries.

Leave-one-out search, Recall@k, the vote, looks-alike scores, and paired differences with
bootstrap intervals (``docs/protocol.md``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from indexer.evaluate.alike import (
    RATED,
    TERTILES,
    AlikeScores,
    RatedRows,
    alike_scores,
    nan_mean,
)
from indexer.evaluate.baselines import baseline_searches, cosine_search, search_space_rows
from indexer.evaluate.loading import (
    CatalogNodules,
    CutRows,
    EvaluateOptions,
    NeighborSearch,
)
from indexer.evaluate.records import (
    FeatureResult,
    LooksAlike,
    PairedDifference,
    RecallCount,
    RetrievalSection,
)
from indexer.evaluate.scores import (
    Interval,
    Neighbors,
    VoteScores,
    bootstrap,
    hits_at_1,
    knn_vote,
    recall_at_k,
    vote_accuracy,
    vote_auc,
)
from model.nn.embedder import Embedder

KS = (1, 2, 3, 4)


#: Table 1 of Park et al. (real LUNA16, 679 nodules), Recall@1..4.
PAPER_RECALL = {
    "binary": {1: 0.844, 2: 0.909, 3: 0.946, 4: 0.954},
    "four_class": {1: 0.627, 2: 0.784, 3: 0.850, 4: 0.884},
}


LABEL_KINDS = ("binary", "four_class")


#: The paired comparisons of the network with each baseline (same queries, resampled together):
#: the label metrics, then whether the neighbours look alike.
LABEL_METRICS = ("binary_recall_at_1", "four_class_recall_at_1", "vote_auc")


ALIKE_METRICS = (
    "rating_difference_top1",
    "ndcg_at_4",
    *(f"binary_recall_at_1_{name}" for name in TERTILES),
)


PAIRED_METRICS = LABEL_METRICS + ALIKE_METRICS


#: Paired metrics where lower is better (the network "beats" with an interval below zero).
LOWER_IS_BETTER = frozenset({"rating_difference_top1"})


#: The k of the looks-alike table's "mean over the top k" column (Recall@k's largest k).
ALIKE_K = 4


def _mean_difference(
    a: npt.ArrayLike, b: npt.ArrayLike
) -> Callable[[npt.NDArray[np.int64]], float]:
    """Per-query scores' mean difference on a sample (NaN entries, e.g. unrated, left out)."""
    fa, fb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return lambda s: nan_mean(fa[s]) - nan_mean(fb[s])


def _interval(interval: Interval, lower_is_better: bool = False) -> PairedDifference:
    return PairedDifference(
        difference=interval.value,
        ci95=(interval.low, interval.high),
        beats=bool(interval.high < 0) if lower_is_better else bool(interval.low > 0),
    )


@dataclass(frozen=True)
class Searched:
    """One search's neighbours over the evaluated rows and its per-query scores."""

    neighbors: Neighbors
    alike: AlikeScores


def _per_query(
    nodules: CatalogNodules, rows: npt.NDArray[np.int64], rated: RatedRows, found: Searched
) -> dict[str, npt.NDArray[np.float64]]:
    """Each paired metric that is a mean over queries, as one score per query (NaN: not asked)."""
    yb, y4 = nodules.label_binary[rows], nodules.label_4class[rows]
    hits = hits_at_1(yb, found.neighbors).astype(np.float64)
    out = {
        "binary_recall_at_1": hits,
        "four_class_recall_at_1": hits_at_1(y4, found.neighbors).astype(np.float64),
        "rating_difference_top1": found.alike.mean_difference_top1,
        "ndcg_at_4": found.alike.ndcg[4],
    }
    for t, name in enumerate(TERTILES):
        out[f"binary_recall_at_1_{name}"] = np.where(rated.tertile == t, hits, np.nan)
    return out


def paired_difference(
    network: Searched,
    baseline: Searched,
    nodules: CatalogNodules,
    rows: npt.NDArray[np.int64],
    rated: RatedRows,
    options: EvaluateOptions,
) -> dict[str, PairedDifference]:
    """Network minus baseline on the same queries, with a paired patient-bootstrap interval.

    Each replicate resamples the patients once and scores both feature sets on that sample, so
    the interval is of the difference itself (the two are strongly correlated).
    """
    yb = nodules.label_binary[rows]
    n, reps, seed = len(rows), options.bootstrap_replicates, options.seed
    groups = [nodules.patient_id[r] for r in rows.tolist()]
    mine, theirs = (_per_query(nodules, rows, rated, x) for x in (network, baseline))
    out: dict[str, PairedDifference] = {}
    for name in PAIRED_METRICS:
        if name == "vote_auc":
            continue
        statistic = _mean_difference(mine[name], theirs[name])
        found = bootstrap(statistic, n, groups=groups, replicates=reps, seed=seed)
        out[name] = _interval(found, lower_is_better=name in LOWER_IS_BETTER)
    va = knn_vote(yb, network.neighbors, options.vote_k)
    vb = knn_vote(yb, baseline.neighbors, options.vote_k)

    def auc_difference(s: npt.NDArray[np.int64]) -> float:
        sample_a = VoteScores(va.probability[s], va.majority[s])
        sample_b = VoteScores(vb.probability[s], vb.majority[s])
        return vote_auc(yb[s], sample_a) - vote_auc(yb[s], sample_b)

    found = bootstrap(auc_difference, n, groups=groups, replicates=reps, seed=seed)
    out["vote_auc"] = _interval(found)
    return {name: out[name] for name in PAIRED_METRICS}


def _looks_alike(
    nodules: CatalogNodules,
    rows: npt.NDArray[np.int64],
    rated: RatedRows,
    found: Searched,
) -> LooksAlike:
    """The section's "looks alike" record from its per-query scores."""
    diff = found.alike.differences
    by_tertile: dict[str, dict[str, RecallCount]] = {}
    for t, name in enumerate(TERTILES):
        members = rated.tertile == t
        by_tertile[name] = {}
        for kind, labels in (
            ("binary", nodules.label_binary[rows]),
            ("four_class", nodules.label_4class[rows]),
        ):
            hits = hits_at_1(labels, found.neighbors)
            by_tertile[name][kind] = RecallCount(
                hits=int(hits[members].sum()), queries=int(members.sum())
            )

    def per_characteristic(values: npt.NDArray[np.float64]) -> dict[str, float]:
        out = {name: nan_mean(values[:, j]) for j, name in enumerate(RATED)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # unrated rows: NaN, left out
            out["mean"] = nan_mean(np.nanmean(values, axis=1))
        return out

    return LooksAlike(
        k=ALIKE_K,
        n_rated_queries=rated.n_rated,
        rating_difference_top1=per_characteristic(diff.top1),
        rating_difference_top_k=per_characteristic(diff.top_k),
        ndcg_at_k={str(k): nan_mean(v) for k, v in found.alike.ndcg.items()},
        diameter_tertiles_mm=rated.tertile_edges_mm,
        recall_at_1_by_diameter_tertile=by_tertile,
    )


def _section(
    search: NeighborSearch,
    nodules: CatalogNodules,
    rows: npt.NDArray[np.int64],
    exclude_same_patient: bool,
    options: EvaluateOptions,
    rated: RatedRows,
) -> tuple[RetrievalSection, Searched]:
    """Recall@k, the vote (accuracy, AUC, with intervals) and the looks-alike scores of a search."""
    patients = [nodules.patient_id[r] for r in rows.tolist()] if exclude_same_patient else None
    k_max = max(max(KS), options.vote_k)
    neighbors = search(patients, k_max)
    found = Searched(neighbors, alike_scores(rated, neighbors, ALIKE_K, KS, patients))
    recall_values: dict[str, dict[str, float]] = {}
    recall_counts: dict[str, dict[str, RecallCount]] = {}
    for kind, labels in (
        ("binary", nodules.label_binary[rows]),
        ("four_class", nodules.label_4class[rows]),
    ):
        recall = recall_at_k(labels, neighbors, KS)
        recall_values[kind] = {str(k): h.value for k, h in recall.items()}
        recall_counts[kind] = {
            str(k): RecallCount(hits=h.hits, queries=h.queries) for k, h in recall.items()
        }
    y = nodules.label_binary[rows]
    votes = knn_vote(y, neighbors, options.vote_k)

    def accuracy(sample: npt.NDArray[np.int64]) -> float:
        chosen = knn_vote(y, _take(neighbors, sample), options.vote_k)
        return vote_accuracy(y[sample], chosen)

    def auc(sample: npt.NDArray[np.int64]) -> float:
        chosen = knn_vote(y, _take(neighbors, sample), options.vote_k)
        return vote_auc(y[sample], chosen)

    n = len(rows)
    reps, seed = options.bootstrap_replicates, options.seed
    groups = [nodules.patient_id[r] for r in rows.tolist()]
    acc = bootstrap(accuracy, n, groups=groups, replicates=reps, seed=seed)
    area = bootstrap(auc, n, groups=groups, replicates=reps, seed=seed)
    section = RetrievalSection(
        recall_at_k=recall_values,
        recall_counts=recall_counts,
        vote_k=options.vote_k,
        vote_accuracy=acc.value,
        vote_accuracy_ci95=(acc.low, acc.high),
        auc=area.value,
        auc_ci95=(area.low, area.high),
        n_without_vote=int(np.isnan(votes.majority).sum()),
        looks_alike=_looks_alike(nodules, rows, rated, found),
    )
    return section, found


def _take(neighbors: Neighbors, sample: npt.NDArray[np.int64]) -> Neighbors:
    return Neighbors(neighbors.index[sample], neighbors.similarity[sample])


def evaluate_features(
    search: NeighborSearch,
    nodules: CatalogNodules,
    rows: npt.NDArray[np.int64],
    options: EvaluateOptions,
    rated: RatedRows,
) -> tuple[FeatureResult, Searched]:
    """Headline section (per the option) with the other patient mode nested inside."""
    head, found = _section(search, nodules, rows, options.exclude_same_patient, options, rated)
    other, _ = _section(search, nodules, rows, not options.exclude_same_patient, options, rated)
    key = "same_patient_included" if options.exclude_same_patient else "same_patient_excluded"
    return FeatureResult(**dict(head), **{key: other}), found


@dataclass(frozen=True)
class Comparison:
    """The network's section, its neighbours and every baseline's section and paired test."""

    network: FeatureResult
    neighbors: Neighbors
    rated: RatedRows
    baselines: dict[str, FeatureResult]
    paired: dict[str, dict[str, PairedDifference]]


def compare(
    nodules: CatalogNodules,
    rows: npt.NDArray[np.int64],
    cut: CutRows,
    embedder: Embedder,
    options: EvaluateOptions,
    features: npt.NDArray[np.float32],
) -> Comparison:
    """Leave-one-out search with the stored vectors and with each baseline's features.

    ``cut``: what the rows' CT gives the baselines (``cut_patches``); ``features``: the model's
    features of its patches (``Embedder.embed_patches``).
    """
    stored = nodules.vectors[rows]
    diameters = nodules.diameter_mm[rows]
    rated = RatedRows.of([nodules.reader_ratings[r] for r in rows.tolist()], diameters)
    search = cosine_search(stored)
    network, mine = evaluate_features(search, nodules, rows, options, rated)
    searches = baseline_searches(cut, embedder, diameters, options.seed)
    searches.update(search_space_rows(nodules, rows, cut, embedder, features))
    baselines: dict[str, FeatureResult] = {}
    paired: dict[str, dict[str, PairedDifference]] = {}
    for name, search in searches.items():
        baselines[name], found = evaluate_features(search, nodules, rows, options, rated)
        paired[name] = paired_difference(mine, found, nodules, rows, rated, options)
    return Comparison(network, mine.neighbors, rated, baselines, paired)
