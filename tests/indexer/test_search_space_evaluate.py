"""``evaluate`` of a catalogue whose vector has blocks; the rated set never holds held-out
patients (issue 29)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from indexer.cli import main as nodule_index
from indexer.data.synth.heldout import HELDOUT_PATIENTS
from indexer.evaluate.evaluation import evaluate
from indexer.evaluate.loading import EvaluateOptions
from indexer.search.data import load_rated


def test_evaluate_reports_the_vector_its_features_and_its_click_only_path(
    synth_set: Path, synth_labels: Path, search_model: Path, tmp_path: Path
) -> None:
    index = tmp_path / "index"
    build = ["build", "--data", str(synth_set), "--model", str(search_model), "--index"]
    build += [str(index), "--labels", str(synth_labels), "--no-progress", "--workers", "1"]
    assert nodule_index(build) == 0
    options = EvaluateOptions(bootstrap_replicates=20, workers=1, device="cpu")
    report = evaluate(index, tmp_path / "report", options=options)
    # The stored vectors are what the model and the recorded sizes give today.
    assert report.stored_vectors_max_abs_diff < 1e-4
    assert report.search_blocks is not None
    assert set(report.search_blocks) == {"features", "size", "density", "shape", "learned"}
    assert {"features", "estimated_sizes"} <= set(report.baselines)
    assert {"features", "estimated_sizes", "diameter_density"} <= set(report.paired_vs_baselines)
    queries = report.recall_counts["binary"]["1"].queries
    assert report.baselines["estimated_sizes"].recall_counts["binary"]["1"].queries == queries
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| search vector (features 0.22, size 0.22" in markdown
    assert "the same vector, each query's size estimated from its image" in markdown
    assert "network features alone (the paper's mid-features)" in markdown


def test_the_rated_set_leaves_the_held_out_patients_out(
    synth_set: Path, synth_labels: Path, tmp_path: Path
) -> None:
    with synth_labels.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows
    held = sorted(HELDOUT_PATIENTS)[0]
    rows[0]["patient_id"] = held
    edited = tmp_path / "labels.csv"
    with edited.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    before = load_rated(synth_set, synth_labels)
    after = load_rated(synth_set, edited)
    assert held not in after.patient_id
    assert len(after) == len(before) - 1
    assert np.all(np.isfinite(after.diameter_mm))


def test_an_unusable_diameter_leaves_its_nodule_without_a_profile_not_its_scan(
    synth_set: Path,
) -> None:
    """A nodule annotated without a diameter gets a NaN profile (its features search alone)."""
    from indexer.data.luna import find_series, read_annotations
    from indexer.data.patches import ScanJob, cut_scan
    from model.preprocessing import DEFAULT_SPEC

    annotations = read_annotations(synth_set / "annotations.csv")
    series = find_series(synth_set)
    first = next(a for a in annotations if a.series_uid in series)
    job = ScanJob(
        first.series_uid,
        series[first.series_uid],
        [first.center_xyz, first.center_xyz],
        DEFAULT_SPEC,
        profile_diameters_mm=[float(first.diameter_mm or 0.0), 0.0],
    )
    result = cut_scan(job)
    assert result.error is None
    assert result.patches is not None
    assert result.profiles is not None
    assert np.all(np.isfinite(result.profiles[0]))
    assert np.all(np.isnan(result.profiles[1]))
