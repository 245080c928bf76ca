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
"""

from __future__ import annotations

import logging
import platform
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from indexer.build.maps import embedding_map
from indexer.data.patches import ScanJob, iter_scan_patches
from indexer.evaluate import figures, tables
from indexer.evaluate.alike import (
    RATED,
    TERTILES,
    AlikeScores,
    RatedRows,
    alike_scores,
    nan_mean,
    reader_matrix,
)
from indexer.evaluate.mask_quality import (
    MaskQuality,
    NoduleMaskScore,
    read_reference,
    reference_mask_path,
    reference_nodule,
    score_nodule,
)
from indexer.evaluate.mask_quality import summarize as summarize_masks
from indexer.evaluate.records import (
    EvaluationReport,
    FeatureResult,
    FpReduction,
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
    loo_neighbors,
    loo_neighbors_by_measurements,
    loo_neighbors_by_size,
    loo_neighbors_by_size_and_vectors,
    loo_neighbors_of_queries,
    normalise,
    recall_at_k,
    vote_accuracy,
    vote_auc,
)
from indexer.search.data import profiles_at
from indexer.version import code_version
from model.clinical.descriptors import DESCRIPTOR_NAMES, describe_region
from model.clinical.labels import CHARACTERISTICS, Characteristics, LabelRule, derive_label
from model.clinical.measure import MeasureError
from model.clinical.nodule_mask import find_nodule
from model.ct.open import open_source
from model.ct.volume import CTVolume, VolumeSource
from model.nn.card import ModelCard
from model.nn.checkpoint import load_model
from model.nn.embedder import Embedder
from model.nn.network import NoduleNet
from model.nn.profile import PROFILE_NAMES
from model.preprocessing import PatchSpec
from model.store.catalog import Catalog
from model.store.layout import write_json_atomic
from model.store.manifest import Manifest
from model.store.tables import Nodule, NoduleRead

logger = logging.getLogger(__name__)

KS = (1, 2, 3, 4)
#: Table 1 of Park et al. (real LUNA16, 679 nodules), Recall@1..4.
PAPER_RECALL = {
    "binary": {1: 0.844, 2: 0.909, 3: 0.946, 4: 0.954},
    "four_class": {1: 0.627, 2: 0.784, 3: 0.850, 4: 0.884},
}
LABEL_KINDS = ("binary", "four_class")
BASELINES = ("raw", "random_init", "diameter", "diameter_raw", "diameter_density", "measured")
#: The density baseline's sphere at the nodule's centre: this share of its recorded radius.
DENSITY_SPHERE_FRACTION = 0.75
#: How each baseline is named in report.md.
BASELINE_NAMES = {
    "raw": "raw intensities",
    "random_init": "same network, random weights",
    "diameter": "diameter alone (nearest by diameter_mm)",
    "diameter_raw": "diameter + raw (mean of the two similarities)",
    "diameter_density": "diameter + density (mean HU in 0.75 x radius; z-scored, Euclidean)",
    "measured": "measured descriptors (7 numbers off the service's mask; z-scored, Euclidean)",
    "features": "network features alone (the paper's mid-features)",
    "estimated_sizes": "the same vector, each query's size estimated from its image",
}
#: Shown first for a model whose vector has a search space (``model.nn.search_space``): its
#: features alone (the paper's claim stays testable) and its click-only path.
SEARCH_ROWS = ("features", "estimated_sizes")
#: What the measured-descriptors baseline reads off each nodule (report.md says it once).
MEASURED_NOTE = (
    "Measured descriptors: the mean diameter, volume, mean and 10th / 90th-percentile HU, solid "
    "fraction and sphericity of the nodule's mask as the service finds it (the model's mask "
    "branch; region growing for a model without one); a nodule without a mask sits at the "
    "column means."
)
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
#: Finds the k neighbours of every query row, optionally without its own patient.
NeighborSearch = Callable[[Sequence[str | None] | None, int], Neighbors]


class EvaluationError(RuntimeError):
    """The catalogue cannot be evaluated (no labelled nodules, unreadable scans, ...)."""


@dataclass(frozen=True)
class EvaluateOptions:
    """Options of one evaluation run."""

    exclude_same_patient: bool = False
    """Headline numbers without neighbours of the query's own patient (both are reported)."""
    label_rule: LabelRule | None = None
    """Re-derive labels from the stored ratings with this rule; None: the catalogue's labels."""
    vote_k: int = 5
    bootstrap_replicates: int = 1000
    seed: int = 0
    workers: int = 1
    device: str = "auto"
    montage_queries: int = 6


@dataclass
class CatalogNodules:
    """Every nodule of a catalogue version, in ``embedding_row`` order."""

    ids: npt.NDArray[np.int64]
    series_uid: list[str]
    source_path: dict[str, Path]
    patient_id: list[str | None]
    center_xyz: list[tuple[float, float, float]]
    diameter_mm: npt.NDArray[np.float64]
    ratings: list[tuple[int, ...]]
    reader_ratings: list[npt.NDArray[np.float64]]
    """Each nodule's reads with all 9 characteristics, ``(readers, 9)`` (zero rows: none)."""
    mean_malignancy: list[float | None]
    label_binary: npt.NDArray[np.float64]
    """0/1, NaN where unlabelled."""
    label_4class: npt.NDArray[np.float64]
    """1/2/4/5, NaN where unlabelled."""
    vectors: npt.NDArray[np.float32]
    map_xy: npt.NDArray[np.float64] | None

    @property
    def labelled(self) -> npt.NDArray[np.int64]:
        """Rows with a binary (and so a 4-class) label."""
        return np.flatnonzero(~np.isnan(self.label_binary)).astype(np.int64)


def load_nodules(catalog: Catalog, rule: LabelRule | None) -> CatalogNodules:
    """Nodules, labels and stored vectors of an opened catalogue version."""
    with catalog.sessions() as session:
        rows = list(
            session.execute(
                select(Nodule)
                .order_by(Nodule.embedding_row)
                .options(
                    selectinload(Nodule.label),
                    selectinload(Nodule.scan),
                    selectinload(Nodule.reads),
                )
            ).scalars()
        )
        binary, four, ratings, means = [], [], [], []
        for n in rows:
            label = n.label
            values = tuple(label.ratings) if label is not None else ()
            b: int | None
            f: int | None
            if rule is not None:
                derived = derive_label(values, rule) if values else None
                b = derived.label_binary if derived else None
                f = derived.label_4class if derived else None
            else:
                b = label.label_binary if label else None
                f = label.label_4class if label else None
            binary.append(np.nan if b is None else float(b))
            four.append(np.nan if f is None else float(f))
            ratings.append(values)
            means.append(label.mean_malignancy if label else None)
        has_map = bool(rows) and all(n.map_x is not None and n.map_y is not None for n in rows)
        out = CatalogNodules(
            ids=np.array([n.id for n in rows], dtype=np.int64),
            series_uid=[n.series_uid for n in rows],
            source_path={
                n.series_uid: catalog.manifest.relocated(
                    Path(n.scan.source_path), catalog.index_dir
                )
                for n in rows
            },
            patient_id=[n.scan.patient_id for n in rows],
            center_xyz=[n.center_xyz for n in rows],
            diameter_mm=np.array([n.diameter_mm for n in rows], dtype=np.float64),
            ratings=ratings,
            reader_ratings=[reader_matrix(_characteristics(n.reads)) for n in rows],
            mean_malignancy=means,
            label_binary=np.array(binary, dtype=np.float64),
            label_4class=np.array(four, dtype=np.float64),
            vectors=np.asarray(catalog.embeddings[[n.embedding_row for n in rows]], np.float32),
            map_xy=(
                np.array([[n.map_x, n.map_y] for n in rows], dtype=np.float64) if has_map else None
            ),
        )
    return out


def _characteristics(reads: list[NoduleRead]) -> list[Characteristics]:
    """The reads that hold all 9 ratings (a malignancy-only read is left out)."""
    out = []
    for r in reads:
        values = {
            name: getattr(r, "internal_structure" if name == "internalStructure" else name)
            for name in CHARACTERISTICS
        }
        if all(v is not None for v in values.values()):
            out.append(Characteristics.from_mapping(values))
    return out


def density_job(
    nodules: CatalogNodules,
    uid: str,
    members: list[int],
    spec: PatchSpec,
    *,
    grow: bool = True,
    profile: bool = False,
) -> ScanJob:
    """The patches of a scan's nodules, each one's density sphere (and region-grown descriptors).

    ``grow``: the descriptors from region growing, in the worker (a model without a mask branch).
    ``profile``: each nodule's profile at its recorded diameter (a model with measured blocks).
    """
    return ScanJob(
        uid,
        nodules.source_path[uid],
        [nodules.center_xyz[r] for r in members],
        spec,
        sphere_radii_mm=[DENSITY_SPHERE_FRACTION * nodules.diameter_mm[r] / 2 for r in members],
        describe=grow,
        profile_diameters_mm=[float(nodules.diameter_mm[r]) for r in members] if profile else None,
    )


@dataclass(frozen=True)
class CutRows:
    """What the baselines read from the CT of each evaluated row, in row order."""

    patches: npt.NDArray[np.float32]
    """``(n, D, H, W)`` from the one patch function, the model's spec."""
    mean_hu: npt.NDArray[np.float64]
    """The density sphere's mean HU (``DENSITY_SPHERE_FRACTION`` of the recorded radius)."""
    descriptors: npt.NDArray[np.float64]
    """``(n, len(DESCRIPTOR_NAMES))`` of the mask the service finds
    (``model.clinical.nodule_mask``); NaN rows where none."""
    mask_scores: list[NoduleMaskScore]
    """The service's masks against the set's reference masks (rows whose scan has one)."""
    profiles: npt.NDArray[np.float64] | None = None
    """``(n, len(PROFILE_NAMES))`` at the recorded diameters (a model with measured blocks)."""


def cut_patches(
    nodules: CatalogNodules, rows: npt.NDArray[np.int64], embedder: Embedder, workers: int
) -> CutRows:
    """The rows' patches, densities and descriptors: one region-read pass per scan.

    Raises:
        EvaluationError: a scan cannot be read.
    """
    by_scan: dict[str, list[int]] = defaultdict(list)
    for r in rows.tolist():
        by_scan[nodules.series_uid[r]].append(r)
    spec = embedder.card.preprocessing
    grow = not embedder.segments
    profile = embedder.uses_profile
    jobs = [
        density_job(nodules, uid, members, spec, grow=grow, profile=profile)
        for uid, members in sorted(by_scan.items())
    ]
    patches = np.zeros((len(rows), *spec.patch_shape_zyx), dtype=np.float32)
    mean_hu = np.zeros(len(rows), dtype=np.float64)
    descriptors = np.full((len(rows), len(DESCRIPTOR_NAMES)), np.nan)
    profiles = np.full((len(rows), len(PROFILE_NAMES)), np.nan) if profile else None
    position = {r: i for i, r in enumerate(rows.tolist())}
    for result in iter_scan_patches(jobs, workers):
        if result.patches is None or result.mean_hu is None:
            raise EvaluationError(
                f"scan {result.key} cannot be read for the baselines ({result.error}); is the "
                "data folder the catalogue was built from still there?"
            )
        at = [position[r] for r in by_scan[result.key]]
        patches[at], mean_hu[at] = result.patches, result.mean_hu
        if result.descriptors is not None:
            descriptors[at] = result.descriptors
        if profiles is not None and result.profiles is not None:
            profiles[at] = result.profiles
    mask_scores: list[NoduleMaskScore] = []
    if not grow:
        measured = rows_network_descriptors(nodules, rows, patches, embedder)
        descriptors, mask_scores = measured.descriptors, measured.mask_scores
    return CutRows(patches, mean_hu, descriptors, mask_scores, profiles)


@dataclass(frozen=True)
class NetworkMeasured:
    """The rows' descriptors from the service's masks, and those masks' scores.

    Scores only where the set has reference masks (``mask_quality``).
    """

    descriptors: npt.NDArray[np.float64]
    """``(n, len(DESCRIPTOR_NAMES))``, NaN rows where no mask is found."""
    mask_scores: list[NoduleMaskScore]


def rows_network_descriptors(
    nodules: CatalogNodules,
    rows: npt.NDArray[np.int64],
    patches: npt.NDArray[np.float32],
    embedder: Embedder,
) -> NetworkMeasured:
    """The rows' descriptors from the masks the service finds (``network_descriptors``).

    ``patches``: the rows' patches, in row order. Each scan is opened once.
    """
    descriptors = np.full((len(rows), len(DESCRIPTOR_NAMES)), np.nan)
    scores: list[NoduleMaskScore] = []
    by_scan: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows.tolist()):
        by_scan[nodules.series_uid[r]].append(i)
    for uid, at in sorted(by_scan.items()):
        path = nodules.source_path[uid]
        scan = ScanRows(
            source=open_source(path),
            centers_xyz=[nodules.center_xyz[int(rows[i])] for i in at],
            diameters_mm=[float(nodules.diameter_mm[int(rows[i])]) for i in at],
            reference=read_reference(reference_mask_path(path, uid)),
        )
        measured = network_descriptors(embedder, scan, patches[at])
        descriptors[at] = measured.descriptors
        scores.extend(measured.mask_scores)
    return NetworkMeasured(descriptors, scores)


@dataclass(frozen=True)
class ScanRows:
    """The nodules of one scan to measure, and the scan's reference mask if the set has one."""

    source: VolumeSource
    centers_xyz: Sequence[tuple[float, float, float]]
    diameters_mm: Sequence[float]
    reference: CTVolume | None


def network_descriptors(
    embedder: Embedder, scan: ScanRows, patches: npt.NDArray[np.float32]
) -> NetworkMeasured:
    """Descriptors of the masks the service finds at the centres (``find_nodule``, one scan).

    Also their scores against the scan's reference mask where it has a nodule at the centre.

    ``patches``: the centres' patches, already cut. A NaN row where no mask is found.
    """
    out = np.full((len(scan.centers_xyz), len(DESCRIPTOR_NAMES)), np.nan)
    scores: list[NoduleMaskScore] = []
    for i, center in enumerate(scan.centers_xyz):
        try:
            found = find_nodule(embedder, scan.source, center, patches[i])
        except MeasureError:  # voxels too small to grow in: no mask, as when none is found
            continue
        if found is not None:
            out[i] = describe_region(scan.source, found.region).as_row()
        reference = None if scan.reference is None else reference_nodule(scan.reference, center)
        if reference is not None:
            scores.append(score_nodule(scan.source, center, scan.diameters_mm[i], found, reference))
    return NetworkMeasured(out, scores)


def raw_features(patches: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Raw-intensity baseline: windowed patches 2x average-pooled, flattened, L2-normalised."""
    x = torch.from_numpy(patches[:, None])
    pooled = torch.nn.functional.avg_pool3d(x, 2).flatten(1).numpy()
    return normalise(pooled).astype(np.float32)


def random_init_features(
    embedder: Embedder, patches: npt.NDArray[np.float32], seed: int
) -> npt.NDArray[np.float32]:
    """The same architecture, random weights (PyTorch's default initialisation, seeded)."""
    torch.manual_seed(seed)
    network = NoduleNet(embedder.card.arch)
    random = Embedder(network, embedder.card, str(embedder.device), batch_size=64)
    return random.embed_patches(patches)


def cosine_search(vectors: npt.ArrayLike) -> NeighborSearch:
    """Exact cosine search over feature vectors (the service's metric)."""
    return lambda patients, k: loo_neighbors(vectors, k, patients)


def size_search(diameters_mm: npt.ArrayLike) -> NeighborSearch:
    """Nearest by annotated diameter: what size alone says."""
    return lambda patients, k: loo_neighbors_by_size(diameters_mm, k, patients)


def size_and_raw_search(vectors: npt.ArrayLike, diameters_mm: npt.ArrayLike) -> NeighborSearch:
    """Raw intensities and size together: the baseline once size is known."""
    return lambda patients, k: loo_neighbors_by_size_and_vectors(vectors, diameters_mm, k, patients)


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
class _Searched:
    """One search's neighbours over the evaluated rows and its per-query scores."""

    neighbors: Neighbors
    alike: AlikeScores


def _per_query(
    nodules: CatalogNodules, rows: npt.NDArray[np.int64], rated: RatedRows, found: _Searched
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
    network: _Searched,
    baseline: _Searched,
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
    found: _Searched,
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
) -> tuple[RetrievalSection, _Searched]:
    """Recall@k, the vote (accuracy, AUC, with intervals) and the looks-alike scores of a search."""
    patients = [nodules.patient_id[r] for r in rows.tolist()] if exclude_same_patient else None
    k_max = max(max(KS), options.vote_k)
    neighbors = search(patients, k_max)
    found = _Searched(neighbors, alike_scores(rated, neighbors, ALIKE_K, KS, patients))
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


def _evaluate_features(
    search: NeighborSearch,
    nodules: CatalogNodules,
    rows: npt.NDArray[np.int64],
    options: EvaluateOptions,
    rated: RatedRows,
) -> tuple[FeatureResult, _Searched]:
    """Headline section (per the option) with the other patient mode nested inside."""
    head, found = _section(search, nodules, rows, options.exclude_same_patient, options, rated)
    other, _ = _section(search, nodules, rows, not options.exclude_same_patient, options, rated)
    key = "same_patient_included" if options.exclude_same_patient else "same_patient_excluded"
    return FeatureResult(**dict(head), **{key: other}), found


def _counts(values: npt.NDArray[np.float64]) -> dict[str, int]:
    known = values[~np.isnan(values)].astype(int)
    return {str(v): int((known == v).sum()) for v in sorted(set(known.tolist()))}


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


@dataclass(frozen=True)
class _Catalogue:
    """What an evaluation reads from one catalogue version."""

    index_dir: Path
    version: str
    nodules: CatalogNodules
    manifest: Manifest


@dataclass(frozen=True)
class _Comparison:
    """The network's section, its neighbours and every baseline's section and paired test."""

    network: FeatureResult
    neighbors: Neighbors
    rated: RatedRows
    baselines: dict[str, FeatureResult]
    paired: dict[str, dict[str, PairedDifference]]


def _read_catalogue(index_dir: Path, version: str | None, options: EvaluateOptions) -> _Catalogue:
    catalog = Catalog.open(index_dir, version)
    try:
        nodules = load_nodules(catalog, options.label_rule)
        loaded = _Catalogue(index_dir, catalog.version, nodules, catalog.manifest)
    finally:
        catalog.close()
    if len(nodules.labelled) < 2:
        raise EvaluationError(
            f"catalogue {loaded.version} has {len(nodules.labelled)} labelled nodules; "
            "leave-one-out needs 2 or more"
        )
    return loaded


def _catalogue_embedder(source: _Catalogue, device: str) -> Embedder:
    """The model the catalogue was built with (refused when its fingerprint differs)."""
    model_dir = source.manifest.model_dir_at(source.index_dir)
    network, card = load_model(model_dir, "cpu")
    if card.fingerprint != source.manifest.model_fingerprint:
        raise EvaluationError(
            f"the model in {model_dir} ({card.fingerprint[:12]}) is not the one catalogue "
            f"{source.version} was built with ({source.manifest.model_fingerprint[:12]})"
        )
    return Embedder(network, card, device, batch_size=64)


def baseline_searches(
    cut: CutRows, embedder: Embedder, diameter_mm: npt.NDArray[np.float64], seed: int
) -> dict[str, NeighborSearch]:
    """The searches the network is compared with (``BASELINES``), over the same queries.

    Besides image features: two numbers a radiologist reads off a nodule (the recorded diameter
    and the density sphere's mean HU), and the descriptors measured on its mask.
    """
    raw = raw_features(cut.patches)
    measured = np.column_stack([diameter_mm, cut.mean_hu])
    return {
        "raw": cosine_search(raw),
        "random_init": cosine_search(random_init_features(embedder, cut.patches, seed)),
        "diameter": size_search(diameter_mm),
        "diameter_raw": size_and_raw_search(raw, diameter_mm),
        "diameter_density": lambda patients, k: loo_neighbors_by_measurements(
            measured, k, patients
        ),
        "measured": lambda patients, k: loo_neighbors_by_measurements(cut.descriptors, k, patients),
    }


def _compare(
    nodules: CatalogNodules,
    rows: npt.NDArray[np.int64],
    cut: CutRows,
    embedder: Embedder,
    options: EvaluateOptions,
    features: npt.NDArray[np.float32],
) -> _Comparison:
    """Leave-one-out search with the stored vectors and with each baseline's features.

    ``cut``: what the rows' CT gives the baselines (``cut_patches``); ``features``: the model's
    features of its patches (``Embedder.embed_patches``).
    """
    stored = nodules.vectors[rows]
    diameters = nodules.diameter_mm[rows]
    rated = RatedRows.of([nodules.reader_ratings[r] for r in rows.tolist()], diameters)
    search = cosine_search(stored)
    network, mine = _evaluate_features(search, nodules, rows, options, rated)
    searches = baseline_searches(cut, embedder, diameters, options.seed)
    searches.update(search_space_rows(nodules, rows, cut, embedder, features))
    baselines: dict[str, FeatureResult] = {}
    paired: dict[str, dict[str, PairedDifference]] = {}
    for name, search in searches.items():
        baselines[name], found = _evaluate_features(search, nodules, rows, options, rated)
        paired[name] = paired_difference(mine, found, nodules, rows, rated, options)
    return _Comparison(network, mine.neighbors, rated, baselines, paired)


def search_space_rows(
    nodules: CatalogNodules,
    rows: npt.NDArray[np.int64],
    cut: CutRows,
    embedder: Embedder,
    features: npt.NDArray[np.float32],
) -> dict[str, NeighborSearch]:
    """For a vector with a search space: its features alone, and its click-only path.

    The click-only path: each query's vector read at the size the service estimates from its
    image (``find_nodule``'s mean diameter; its features alone where none is found), searched
    against the stored vectors (recorded sizes).
    """
    if embedder.card.search is None:
        return {}
    estimated = cut.descriptors[:, DESCRIPTOR_NAMES.index("mean_diameter_mm")]
    profiles = profiles_at(
        [nodules.source_path[nodules.series_uid[r]] for r in rows.tolist()],
        [nodules.center_xyz[r] for r in rows.tolist()],
        estimated.tolist(),
        embedder.card.preprocessing,
    )
    queries = embedder.compose(features, profiles)
    stored = nodules.vectors[rows]
    return {
        "features": cosine_search(features),
        "estimated_sizes": lambda patients, k: loo_neighbors_of_queries(
            queries, stored, k, patients
        ),
    }


def _write_figures(
    source: _Catalogue,
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


def _report(
    source: _Catalogue,
    card: ModelCard,
    found: _Comparison,
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
    source = _read_catalogue(index_dir, version, options)
    nodules, rows = source.nodules, source.nodules.labelled
    embedder = _catalogue_embedder(source, options.device)
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
    found = _compare(nodules, rows, cut, embedder, options, features)
    out_dir.mkdir(parents=True, exist_ok=True)
    map_source = _write_figures(source, patches, found.neighbors, out_dir, options)
    elapsed = time.perf_counter() - t0
    quality = summarize_masks(cut.mask_scores)
    report = _report(source, embedder.card, found, drift, map_source, options, elapsed, quality)
    # model_dump (python mode): tuples become JSON lists and NaN stays NaN, as before.
    write_json_atomic(out_dir / "report.json", report.model_dump())
    (out_dir / "report.md").write_text(render_markdown(report), encoding="utf-8")
    logger.info("report in %s (%.1f s)", out_dir, report.elapsed_s)
    return report


_fmt = tables.fmt


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
    return lines + tables.looks_alike_lines(named)


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
    return tables.paired_lines(
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
    lines += tables.mask_quality_lines(report.mask_quality)
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
