"""The evaluation: metrics on hand-made embeddings with known answers, and the report files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer.cli import main as nodule_index
from indexer.evaluate import figures
from indexer.evaluate.alike import RATED, TERTILES
from indexer.evaluate.baselines import BASELINES
from indexer.evaluate.protocol import LOWER_IS_BETTER, PAIRED_METRICS
from indexer.evaluate.scores import (
    bootstrap,
    hits_at_1,
    knn_vote,
    loo_neighbors,
    loo_neighbors_by_measurements,
    loo_neighbors_by_size,
    loo_neighbors_by_size_and_vectors,
    recall_at_k,
    vote_accuracy,
    vote_auc,
)
from model.clinical.vote import majority, malignant_probability
from model.store.catalog import Catalog
from model.store.tables import Nodule

# Five unit vectors at these angles (degrees): every pairwise cosine differs, so the order of
# neighbours is unambiguous. Rows: A, B, C, D, E.
ANGLES = (0.0, 10.0, 90.0, 80.0, 47.0)
BINARY = (0, 0, 1, 1, 0)
FOUR = (1, 2, 5, 4, 2)
PATIENTS = ("p1", "p1", "p2", "p3", "p2")


def _vectors() -> np.ndarray:
    rad = np.radians(ANGLES)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1)


def _cos(a: float, b: float) -> float:
    return math.cos(math.radians(abs(a - b)))


def test_neighbor_order_is_by_cosine() -> None:
    nb = loo_neighbors(_vectors(), 4)
    # A: B E D C; B: A E D C; C: D E B A; D: C E B A; E: D B C A.
    assert nb.index.tolist() == [
        [1, 4, 3, 2],
        [0, 4, 3, 2],
        [3, 4, 1, 0],
        [2, 4, 1, 0],
        [3, 1, 2, 0],
    ]
    assert nb.similarity[0, 0] == pytest.approx(_cos(0, 10))
    assert nb.similarity[4, 1] == pytest.approx(_cos(47, 10))


def test_size_baseline_is_nearest_by_diameter() -> None:
    diameters = [4.0, 5.0, 12.0, 20.0, 6.5]
    nb = loo_neighbors_by_size(diameters, 2)
    # 4: 5 (1 mm) then 6.5; 5: 4 then 6.5 (1 and 1.5 mm); 12: 6.5 then 5 (5.5 and 7 mm, not
    # 20 at 8 mm); 20: 12 then 6.5.
    assert nb.index.tolist() == [[1, 4], [0, 4], [4, 1], [2, 4], [1, 0]]
    assert nb.similarity[0, 0] == pytest.approx(1.0 / (1.0 + 1.0))
    assert (nb.similarity > 0).all(), "positive weights for the service's vote"
    excluded = loo_neighbors_by_size(diameters, 1, PATIENTS)
    # Rows 0 and 1 share patient p1: 4 mm's nearest other-patient nodule is 6.5 mm.
    assert excluded.index[:, 0].tolist() == [4, 4, 1, 2, 1]


def test_size_and_vectors_average_the_two_similarities() -> None:
    diameters = [4.0, 5.0, 12.0, 20.0, 6.5]
    nb = loo_neighbors_by_size_and_vectors(_vectors(), diameters, 4)
    # A (0 deg, 4 mm): B at 10 deg and 5 mm scores (cos 10 + 1/2) / 2, the best of the four.
    assert nb.index[0, 0] == 1
    assert nb.similarity[0, 0] == pytest.approx((_cos(0, 10) + 0.5) / 2)
    # Equal sizes would leave the cosine order; equal directions the size order.
    same = loo_neighbors_by_size_and_vectors(_vectors(), [7.0] * 5, 4)
    assert same.index.tolist() == loo_neighbors(_vectors(), 4).index.tolist()


def test_measurements_are_z_scored_and_nearest_by_euclidean_distance() -> None:
    # Diameter (mm) and density (HU) on very different scales: z-scoring weighs them alike.
    features = np.array([[6.0, -600.0], [6.5, 30.0], [12.0, -590.0], [12.5, 40.0]])
    found = loo_neighbors_by_measurements(features, 3)
    z = (features - features.mean(axis=0)) / features.std(axis=0)
    for q in range(4):
        distance = np.linalg.norm(z - z[q], axis=1)
        distance[q] = np.inf
        assert found.index[q].tolist() == np.argsort(distance, kind="stable")[:3].tolist()
        assert found.similarity[q, 0] == pytest.approx(1.0 / (1.0 + distance.min()))
    # A constant column counts for nothing; same-patient rows are left out as elsewhere.
    flat = loo_neighbors_by_measurements(np.array([[1.0, 5.0], [2.0, 5.0], [4.0, 5.0]]), 1)
    assert flat.index[:, 0].tolist() == [1, 0, 1]
    apart = loo_neighbors_by_measurements(features, 1, ["a", "a", "b", "b"])
    assert apart.index[:, 0].tolist() == [2, 3, 0, 1]


def test_hits_at_1_per_query() -> None:
    nb = loo_neighbors(_vectors(), 4)
    # Nearest: A -> B, B -> A, C -> D, D -> C, E -> D (binary 0 0 1 1 0).
    assert hits_at_1(BINARY, nb).tolist() == [True, True, True, True, False]
    assert not hits_at_1([np.nan, 0, 1, 1, 0], nb)[0], "unlabelled queries never hit"


def test_recall_at_k_binary_and_four_class() -> None:
    nb = loo_neighbors(_vectors(), 4)
    binary = recall_at_k(BINARY, nb, (1, 2, 3, 4))
    assert [(h.hits, h.queries) for h in binary.values()] == [(4, 5), (5, 5), (5, 5), (5, 5)]
    four = recall_at_k(FOUR, nb, (1, 2, 3, 4))
    # Only B (-> E at rank 2) and E (-> B at rank 2) ever meet their class; A, C and D are alone.
    assert [(h.hits, h.queries) for h in four.values()] == [(0, 5), (2, 5), (2, 5), (2, 5)]
    assert four[2].value == pytest.approx(0.4)


def test_vote_accuracy_and_auc() -> None:
    nb = loo_neighbors(_vectors(), 3)
    votes = knn_vote(BINARY, nb, 3)
    # A's neighbours B (0), E (0), D (1): the weighted share of malignant is cos80 / the sum.
    expected_a = _cos(0, 80) / (_cos(0, 10) + _cos(0, 47) + _cos(0, 80))
    assert votes.probability[0] == pytest.approx(expected_a)
    # Majorities: A 0, B 0, C 0 (D 1, E 0, B 0), D 0 (C 1, E 0, B 0), E 1 (D 1, B 0, C 1).
    assert votes.majority.tolist() == [0, 0, 0, 0, 1]
    assert vote_accuracy(BINARY, votes) == pytest.approx(2 / 5)
    # Positives C, D score 0.521, 0.455; negatives A 0.095, B 0.161, E 0.663: 4 of 6 pairs.
    assert vote_auc(BINARY, votes) == pytest.approx(4 / 6)


def test_service_vote_rule_on_ties_and_missing_labels() -> None:
    # Two neighbours, one each way: the tie goes to the weighted probability.
    p = malignant_probability([0.9, 0.5], [1.0, 0.0])
    assert float(p) == pytest.approx(0.9 / 1.4)
    assert float(majority([1.0, 0.0], p)) == 1.0
    # An unlabelled neighbour (NaN) does not count; none labelled gives no vote.
    assert float(malignant_probability([0.9, 0.8], [np.nan, 0.0])) == pytest.approx(0.0)
    assert np.isnan(malignant_probability([0.9], [np.nan]))
    assert np.isnan(majority([np.nan], malignant_probability([0.9], [np.nan])))


def test_same_patient_exclusion_removes_exactly_those_neighbors() -> None:
    full = loo_neighbors(_vectors(), 4)
    excluded = loo_neighbors(_vectors(), 4, list(PATIENTS))
    for q in range(len(ANGLES)):
        kept = [j for j in full.index[q] if PATIENTS[j] != PATIENTS[q]]
        got = [j for j in excluded.index[q] if j >= 0]
        assert got == kept
        assert (excluded.index[q] == -1).sum() == 4 - len(kept)
    binary = recall_at_k(BINARY, excluded, (1,))
    # A -> E (0) hit, B -> E (0) hit, C -> D (1) hit, D -> C (1) hit, E -> D (1) miss.
    assert (binary[1].hits, binary[1].queries) == (4, 5)
    # Unknown patients never exclude each other.
    assert (loo_neighbors(_vectors(), 4, [None] * 5).index == full.index).all()


def test_bootstrap_interval() -> None:
    values = np.array([0.0, 1.0] * 50)
    interval = bootstrap(lambda rows: float(values[rows].mean()), len(values), seed=1)
    assert interval.value == pytest.approx(0.5)
    assert interval.low < 0.5 < interval.high
    assert interval == bootstrap(lambda rows: float(values[rows].mean()), len(values), seed=1)
    constant = bootstrap(lambda rows: 0.7, 10)
    assert constant.low == pytest.approx(0.7)
    assert constant.high == pytest.approx(0.7)


def test_evaluate_writes_every_file(app_index: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = ["evaluate", "--index", str(app_index), "--out", str(out), "--bootstrap", "50"]
    assert nodule_index([*args, "--workers", "1", "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    for kind in ("binary", "four_class"):
        for k in ("1", "2", "3", "4"):
            assert 0.0 <= report["recall_at_k"][kind][k] <= 1.0
            for baseline in BASELINES:
                assert 0.0 <= report["baselines"][baseline]["recall_at_k"][kind][k] <= 1.0
        values = [report["recall_at_k"][kind][k] for k in ("1", "2", "3", "4")]
        assert values == sorted(values)  # Recall@k never falls with k
    catalog = Catalog.open(app_index)
    assert report["index_version"] == catalog.version
    assert report["model_fingerprint"] == catalog.model_fingerprint
    with catalog.sessions() as session:
        labelled = sum(
            1
            for n in session.query(Nodule)
            if n.label is not None and n.label.label_binary is not None
        )
        mapped = [(n.map_x, n.map_y) for n in session.query(Nodule)]
    catalog.close()
    assert report["n_queries"] == labelled
    assert report["recall_counts"]["binary"]["1"]["queries"] == labelled
    assert "auc" in report
    assert "same_patient_excluded" in report
    assert report["stored_vectors_max_abs_diff"] < 1e-5
    assert all(x is not None and y is not None for x, y in mapped)  # the map, from the build
    assert report["map"]["source"] == "catalogue"
    markdown = (out / "report.md").read_text()
    assert "| paper (real LUNA16, 679 nodules) | 0.844 | 0.909 | 0.946 | 0.954 |" in markdown
    assert "| diameter alone (nearest by diameter_mm) |" in markdown
    assert "| diameter + raw (mean of the two similarities) |" in markdown
    assert "The network beats (the interval of the difference on its better" in markdown
    assert "**Do the neighbours look alike?**" in markdown
    assert "**Recall@1 within diameter tertiles**" in markdown
    # The synthetic reads carry every characteristic: each section scores them.
    alike = report["looks_alike"]
    assert alike["n_rated_queries"] == labelled
    assert set(alike["rating_difference_top1"]) == {*RATED, "mean"}
    assert all(0.0 <= v <= 5.0 for v in alike["rating_difference_top1"].values())
    assert all(0.0 <= v <= 1.0 for v in alike["ndcg_at_k"].values())
    tertiles = alike["recall_at_1_by_diameter_tertile"]
    assert sum(tertiles[t]["binary"]["queries"] for t in TERTILES) == labelled
    for name in BASELINES:
        assert report["baselines"][name]["looks_alike"]["n_rated_queries"] == labelled
        for metric in PAIRED_METRICS:
            entry = report["paired_vs_baselines"][name][metric]
            low, high = entry["ci95"]
            assert low <= entry["difference"] <= high
            lower_is_better = metric in LOWER_IS_BETTER
            assert entry["beats"] == (high < 0 if lower_is_better else low > 0)
        # The paired difference is exactly the difference of the two reported values.
        assert report["paired_vs_baselines"][name]["binary_recall_at_1"][
            "difference"
        ] == pytest.approx(
            report["recall_at_k"]["binary"]["1"]
            - report["baselines"][name]["recall_at_k"]["binary"]["1"]
        )
    with Image.open(out / "tsne.png") as image:
        assert image.size == figures.TSNE_SIZE_PX
    with Image.open(out / "neighbors.png") as image:
        rows = image.size[1] // figures.MONTAGE_CELL_PX
        assert image.size == (
            figures.MONTAGE_COLUMNS * figures.MONTAGE_CELL_PX,
            rows * figures.MONTAGE_CELL_PX,
        )
        assert 1 <= rows <= 6


def test_evaluate_refuses_what_it_cannot_measure(tmp_path: Path) -> None:
    code = nodule_index(["evaluate", "--index", str(tmp_path / "none"), "--out", str(tmp_path)])
    assert code == 2
