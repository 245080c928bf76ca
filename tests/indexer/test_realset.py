"""``real-set`` (real VOIs + real negative crops) and ``crossval`` on a small fixed real subset.

These read ``../shared/data`` and check structure and bookkeeping, never a score: scores are
the benchmark's (``bench/results/``).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from indexer.cli import main as nodule_index
from indexer.data.crops import patient_subset
from indexer.data.luna import find_series, nodule_mask_path, read_candidates
from indexer.data.realset import REAL_SCANS, RealSetOptions, build_real_set
from model.ct.open import load_volume
from model.nn.card import read_card
from model.store.catalog import sha256_file
from tests.helpers.data import RealSeries

# Builds a real-CT training set from ../shared/data (about a minute): make test, not test-fast.
pytestmark = pytest.mark.slow


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def real_set(
    shared_data: Path, real_series: RealSeries, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, object]]:
    for scan in REAL_SCANS:
        real_series[scan.key]  # unpacked once per session, shared with the other real tests
    out = tmp_path_factory.mktemp("real") / "set"
    options = RealSetOptions(negatives_per_scan=8, inserted_per_scan=2, max_vois=40)
    return out, build_real_set(shared_data, out, real_series.cache, options)


@pytest.mark.shared_data
def test_real_set_holds_vois_and_real_negatives_grouped_by_patient(
    shared_data: Path, real_set: tuple[Path, dict[str, object]]
) -> None:
    out, summary = real_set
    candidates = read_candidates(out / "candidates_V2.csv")
    series = find_series(out)
    assert {c.series_uid for c in candidates} == set(series)
    negatives = [c for c in candidates if c.label == 0]
    inserted = [c for c in candidates if c.series_uid.startswith("INS-")]
    positives = [c for c in candidates if c.label == 1 and c not in inserted]
    assert len(positives) == summary["n_positives"]
    assert len(inserted) == summary["n_inserted"]
    assert all(c.label == 1 for c in inserted)
    # Inserted nodules are annotated (FROC counts them) but never labelled (never queries).
    annotated = {r["seriesuid"] for r in _rows(out / "annotations.csv")}
    labelled = {r["seriesuid"] for r in _rows(out / "labels.csv")}
    assert {c.series_uid for c in inserted} <= annotated - labelled
    assert len(negatives) == summary["n_negatives"]
    assert all(c.series_uid.startswith("NEG-") for c in negatives)
    scans = summary["scans"]
    assert isinstance(scans, list)
    assert [s["key"] for s in scans] == [s.key for s in REAL_SCANS]
    for record, scan in zip(scans, REAL_SCANS, strict=True):
        assert 0 < record["negatives"] <= 8
        assert 0 < record["inserted"] <= 2
        assert record["archive_sha256"] == sha256_file(shared_data / scan.tarball)
        mine = [c for c in negatives if c.series_uid.startswith(f"NEG-{scan.key}-")]
        assert len(mine) == record["negatives"]
        # Each negative sits in its patient's subset, beside that patient's VOIs.
        subset = f"subset{patient_subset(scan.patient_id, 10)}"
        assert {series[c.series_uid].parent.name for c in mine} == {subset}
    patients = {r["seriesuid"]: r["patient_id"] for r in _rows(out / "patients.csv")}
    assert patients["NEG-CPTAC-0000"] == "C3N-00247" or not any(
        c.series_uid == "NEG-CPTAC-0000" for c in negatives
    )
    assert set(patients) == set(series)
    # No negative near a nodule of its own scan (the LIDC-IDRI-0001 nodule is 23 mm wide).
    lidc1 = [c for c in negatives if c.series_uid.startswith("NEG-LIDC-IDRI-0001-")]
    nodule = np.array([56.21, 86.34, -115.87])
    assert all(np.linalg.norm(np.asarray(c.center_xyz) - nodule) > 23.0 for c in lidc1)
    # A negative is framed like a VOI: a thin slab around its centre, not a whole scan.
    crop = load_volume(series[lidc1[0].series_uid])
    assert crop.geometry.contains_world(lidc1[0].center_xyz)
    assert crop.hu_zyx.shape[1] <= 100
    # An inserted nodule is denser than the parenchyma it was rendered into.
    ins = inserted[0]
    volume = load_volume(series[ins.series_uid])
    index = np.rint(volume.geometry.world_to_index_zyx(np.asarray(ins.center_xyz))).astype(int)
    assert volume.hu_zyx[tuple(index)] > -600
    # Inserted shapes and VOIs carry their masks (the mask branch's real-background targets),
    # on their crop's grid, holding the centre; negatives have none.
    mask = load_volume(nodule_mask_path(out, ins.series_uid))
    assert mask.geometry.shape_zyx == volume.geometry.shape_zyx
    assert mask.hu_zyx[tuple(index)] == 1
    assert all(nodule_mask_path(out, c.series_uid).is_file() for c in positives)
    assert not any(nodule_mask_path(out, c.series_uid).exists() for c in negatives)
    assert json.loads((out / "realset.json").read_text())["format"] == 1


@pytest.mark.shared_data
def test_cross_validation_of_a_recipe_reports_every_baseline(
    real_set: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    out, _ = real_set
    cv = tmp_path / "cv"
    train = ["--epochs", "1", "--width", "4", "--batch-size", "8", "--samples-per-epoch", "16"]
    train += ["--outside", "edge", "--select", "last", "--segmentation-weight", "0.5"]
    args = ["crossval", "--data", str(out), "--out", str(cv), "--folds", "2", "--bootstrap", "20"]
    args += ["--size-profile-weight", "0", "--size-profile-weight", "0.5", "--workers", "1"]
    assert nodule_index([*args, "--", *train]) == 0
    report = json.loads((cv / "cv.json").read_text())
    labelled = sum(1 for r in _rows(out / "labels.csv") if r["label_binary"])
    assert report["n_queries"] == labelled
    assert len(report["folds"]) == len(report["fold_models"]) == 2
    cards = [json.loads(Path(m, "card.json").read_text()) for m in report["fold_models"]]
    for card in cards:
        data = card["training"]["data"]
        assert data["source"] == "realset.json"
        assert data["summary"]["n_negatives"] == data["train_negatives"] + data["val_negatives"]
    assert set(report["size_profile_weight_per_fold"]) <= {0.0, 0.5}
    assert set(report["baselines"]) == {
        "raw",
        "random_init",
        "diameter",
        "diameter_raw",
        "diameter_density",
        "measured",
    }
    assert set(report["paired_vs_baselines"]) == set(report["baselines"])
    for section in (report["network"], *report["baselines"].values()):
        assert section["recall_counts"]["binary"]["1"]["queries"] == labelled
    markdown = (cv / "cv.md").read_text()
    assert "| network (cross-validated) |" in markdown
    # Each fold's branch measured its fold's nodules against their VOI masks, beside region
    # growing (the VOIs carry masks; every labelled nodule is a VOI).
    quality = report["mask_quality"]
    assert quality["n_nodules"] == labelled
    assert quality["region_growing"]["n"] == labelled
    assert "**The nodule's mask**" in markdown
    # The folds' mask policy goes into a model of the same recipe's card (here a fold model's
    # copy), with where it came from; the fingerprint stays.
    target = tmp_path / "model"
    shutil.copytree(report["fold_models"][0], target)
    again = [*args, "--set-mask-policy", str(target), "--", *train]
    assert nodule_index(again) == 0  # the fold models are reused
    card = read_card(target)
    assert [list(r) for r in card.mask_policy.region_growing_mm] == [
        list(r) for r in report["mask_quality"]["policy_region_growing_mm"]
    ]
    assert card.mask_policy.chosen_by is not None
    assert "crossval" in card.mask_policy.chosen_by
    assert card.fingerprint == cards[0]["fingerprint"]
    # A fixed model needs no training options; both together are refused.
    assert nodule_index([*args[:5], "--model", report["fold_models"][0], "--", *train]) == 2


@pytest.mark.shared_data
def test_cross_validation_chooses_the_search_blocks_on_nested_folds(
    real_set: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    out, _ = real_set
    model = tmp_path / "model"
    train = ["train", "--data", str(out), "--out", str(model), "--epochs", "1", "--width", "4"]
    train += ["--batch-size", "8", "--samples-per-epoch", "16", "--outside", "edge"]
    assert nodule_index([*train, "--select", "last", "--no-progress"]) == 0
    cv = tmp_path / "cv"
    args = ["crossval", "--data", str(out), "--out", str(cv), "--bootstrap", "20"]
    args += ["--model", str(model), "--workers", "1", "--search-blocks"]
    assert nodule_index([*args, "--folds", "2"]) == 2  # the inner folds need a third
    assert nodule_index([*args, "--folds", "3"]) == 0
    report = json.loads((cv / "cv.json").read_text())
    search = report["search"]
    assert len(search["choice"]["chosen_per_fold"]) == 3
    assert search["choice"]["final"] in {c["name"] for c in search["choice"]["candidates"]}
    labelled = sum(1 for r in _rows(out / "labels.csv") if r["label_binary"])
    for key in ("recorded_sizes", "estimated_sizes"):
        assert search[key]["recall_counts"]["binary"]["1"]["queries"] == labelled
    assert set(search["paired"]) == {"network", *report["baselines"]}
    markdown = (cv / "cv.md").read_text()
    assert "## The search vector's blocks, chosen by nested cross-validation" in markdown
    assert "| chosen blocks, estimated sizes (" in markdown
    # The folds' final choice, fitted on every rated VOI with a model's own features, goes
    # into its card: the blocks, their weights, the projection; the fingerprint follows.
    target = tmp_path / "target"
    shutil.copytree(model, target)
    assert nodule_index([*args, "--folds", "3", "--set-search", str(target)]) == 0
    card = read_card(target)
    assert card.search is not None
    assert card.fingerprint != read_card(model).fingerprint
    assert "crossval --search-blocks" in card.search.chosen_by
    final = search["choice"]["final_weights"]
    assert {b: w for b, w in card.search.weights.items() if w > 0} == final
    assert card.embedding_dim == card.search.dim(card.arch.embedding_dim)
    index = tmp_path / "index"
    build = ["build", "--data", str(out), "--model", str(target), "--index", str(index)]
    assert nodule_index([*build, "--no-progress", "--workers", "1"]) == 0


def test_whole_ct_crops_can_train_every_fold() -> None:
    """Kept apart, the four CTs' crops get their own subset and a patient id apart from VOIs."""
    apart = RealSetOptions(background_always_trains=True)
    assert apart.background_subset("LIDC-IDRI-0001") == apart.n_subsets
    assert apart.background_patient("LIDC-IDRI-0001") == "LIDC-IDRI-0001#background"
    grouped = RealSetOptions()
    assert grouped.background_subset("LIDC-IDRI-0001") == patient_subset("LIDC-IDRI-0001", 10)
    assert grouped.background_patient("LIDC-IDRI-0001") == "LIDC-IDRI-0001"
