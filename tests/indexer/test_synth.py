"""The synthetic LUNA16 set: layout, formats, geometry realism, nodules and reads."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from indexer.data.describe import describe
from indexer.data.luna import find_series, nodule_mask_path, read_annotations, read_candidates
from indexer.data.synth import generate as generate_module
from indexer.data.synth.draw import NodulePoolError, draw_nodules
from indexer.data.synth.generate import generate, plan_jobs
from indexer.data.synth.heldout import HELDOUT_PATIENTS
from indexer.data.synth.lidc_table import SERIES_COLUMN, TABLE_NAME, load_profiles, parse_rows
from indexer.data.synth.nodules import design_nodule
from model.clinical.labels import CHARACTERISTICS, Characteristics
from model.ct.open import load_volume, open_volume
from model.preprocessing import DEFAULT_SPEC, PatchSpec, extract_patch, patch_hu
from tests.helpers.data import small_config

SMALL = PatchSpec(patch_shape_zyx=(4, 4, 4), spacing_mm=0.5)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix != ".dcm"  # DICOM files carry random SOP instance UIDs
    }


def test_layout_is_luna16(synth_set: Path) -> None:
    series = find_series(synth_set)
    assert len(series) == 4
    assert {p.parent.name for p in series.values()} == {"subset0", "subset1", "subset2"}
    for path in series.values():
        assert path.with_suffix(".raw").is_file()
        header = path.read_text()
        assert "ElementType = MET_SHORT" in header
        assert f"ElementDataFile = {path.stem}.raw" in header
    assert _rows(synth_set / "annotations.csv")[0].keys() == {
        "seriesuid",
        "coordX",
        "coordY",
        "coordZ",
        "diameter_mm",
    }
    assert list(_rows(synth_set / "candidates_V2.csv")[0]) == [
        "seriesuid",
        "coordX",
        "coordY",
        "coordZ",
        "class",
    ]
    listed = (synth_set / "seriesuids.csv").read_text().split()
    assert sorted(listed) == sorted(series)
    assert {r["seriesuid"] for r in _rows(synth_set / "patients.csv")} == set(series)
    summary = json.loads((synth_set / "synth.json").read_text())
    assert summary["counts"]["scans"] == 4
    assert summary["counts"]["dicom_series"] == 1


def test_geometry_is_realistic(synth_set: Path) -> None:
    for path in find_series(synth_set).values():
        g = load_volume(path).geometry
        sx, sy, sz = g.spacing_xyz
        assert 0.5 <= sx == sy <= 0.95
        assert 0.6 <= sz <= 2.5
        assert np.linalg.norm(g.origin_xyz) > 10.0
        assert np.allclose(np.abs(g.direction_matrix), np.eye(3))


def test_some_scans_have_flipped_axes(tmp_path: Path, tiny_table: Path) -> None:
    out = tmp_path / "set"
    # 7 scans: the tiny table has at least 7 nodules, one for each (none is used twice).
    summary = generate(small_config(out, tiny_table, seed=11, scans=7))
    directions = [np.diag(np.reshape(s["direction"], (3, 3))) for s in summary["scans"]]
    assert any(np.any(d < 0) for d in directions)
    assert any(np.all(d > 0) for d in directions)
    assert summary["counts"]["flipped_scans"] == sum(bool(np.any(d < 0)) for d in directions)


def test_deterministic_by_seed(tmp_path: Path, tiny_table: Path, synth_set: Path) -> None:
    again = tmp_path / "again"
    generate(small_config(again, tiny_table))
    assert _digest(again) == _digest(synth_set)
    other = tmp_path / "other"
    generate(small_config(other, tiny_table, seed=4))
    assert _digest(other)["annotations.csv"] != _digest(synth_set)["annotations.csv"]


def test_a_small_source_gives_each_nodule_once_and_refuses_too_many_scans(
    tmp_path: Path, tiny_table: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a real source names them: each nodule of its own LIDC patient (a table without series
    # would be templates, drawn per scan).
    profiles = [
        dataclasses.replace(p, patient_id=f"LIDC-{i}")
        for i, p in enumerate(load_profiles(tiny_table)[:7])
    ]
    jobs = plan_jobs(small_config(tmp_path / "a", tiny_table), profiles)
    drawn = sorted(p.source_id for j in jobs for p in j.profiles)
    # 4 scans want 3-9 nodules each; the 7 are spread over them, each once, every scan one.
    assert drawn == sorted(p.source_id for p in profiles)
    assert all(j.profiles for j in jobs)
    with pytest.raises(NodulePoolError, match="fewer scans"):
        plan_jobs(small_config(tmp_path / "b", tiny_table, scans=8), profiles)
    monkeypatch.setattr(generate_module, "load_source_profiles", lambda _: profiles)
    with pytest.raises(NodulePoolError, match="fewer scans"):
        generate(small_config(tmp_path / "b", tiny_table, scans=len(profiles) + 1))
    assert not (tmp_path / "b").exists(), "nothing written for a set that cannot be made"


def test_a_table_of_templates_is_drawn_per_scan(tmp_path: Path, tiny_table: Path) -> None:
    """Rows that name no LIDC series or patient are templates: distinct within a scan only."""
    profiles = load_profiles(tiny_table)
    assert all(p.patient_id is None for p in profiles)
    jobs = plan_jobs(small_config(tmp_path / "a", tiny_table, scans=6), profiles)
    for job in jobs:
        ids = [p.source_id for p in job.profiles]
        assert ids
        assert len(ids) == len(set(ids))


def test_table_rows_get_their_patient_and_held_out_ones_are_left_out(tiny_table: Path) -> None:
    rows = _rows(tiny_table)[:8]
    for i, row in enumerate(rows):
        row[SERIES_COLUMN] = f"S{i}"
    held_out = sorted(HELDOUT_PATIENTS)[0]
    # Row S6 (noduleID 7) has a series no database knows: it is left out too.
    patient_of = {"S0": held_out, "S1": "P1", "S2": "P1", "S3": "P2", "S4": "P3", "S5": "P3"}
    profiles = parse_rows(rows, patient_of | {"S7": "P4"}, HELDOUT_PATIENTS)
    assert [p.source_id for p in profiles] == [
        "P1/depaul-nodule-2",
        "P1/depaul-nodule-3",
        "P2/depaul-nodule-4",
        "P3/depaul-nodule-5",
        "P3/depaul-nodule-6",
    ]
    # Synthetic patient A's two scans take whole LIDC patients (2 or 3 of them); B one of the
    # rest. Whatever the order, the 5 nodules of 3 patients suffice.
    scan_patients = ["A", "A", "B"]
    drawn = draw_nodules(profiles, scan_patients, [2, 1, 1], np.random.default_rng(0))
    assert [len(nodules) for nodules in drawn] == [2, 1, 1]
    holders: dict[str, set[str]] = defaultdict(set)
    for synthetic, nodules in zip(scan_patients, drawn, strict=True):
        for p in nodules:
            holders[str(p.patient_id)].add(synthetic)
    assert all(len(h) == 1 for h in holders.values())
    ids = [p.source_id for nodules in drawn for p in nodules]
    assert len(ids) == len(set(ids))


def test_refuses_foreign_folder_and_needs_overwrite(tmp_path: Path, tiny_table: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"no synth\.json"):
        generate(small_config(foreign, tiny_table, scans=1))
    assert (foreign / "precious.txt").read_text() == "keep me"
    ours = tmp_path / "ours"
    generate(small_config(ours, tiny_table, scans=1))
    with pytest.raises(FileExistsError, match="--overwrite"):
        generate(small_config(ours, tiny_table, scans=1))
    generate(small_config(ours, tiny_table, scans=1), overwrite=True)


def test_annotations_are_nodules_inside_lung(synth_set: Path) -> None:
    series = find_series(synth_set)
    truth = {(r["seriesuid"], r["coordX"]): r for r in _rows(synth_set / "nodules_truth.csv")}
    annotations = read_annotations(synth_set / "annotations.csv")
    assert len(annotations) >= 4
    for a in annotations:
        assert a.diameter_mm is not None
        assert 3.0 <= a.diameter_mm <= 30.0
        source = open_volume(series[a.series_uid])
        center_hu = float(patch_hu(source, a.center_xyz, SMALL).mean())
        morphology = truth[(a.series_uid, f"{a.center_xyz[0]:g}")]["morphology"]
        if morphology == "ground_glass":
            assert -800.0 < center_hu < -250.0, morphology
        else:
            assert center_hu > -350.0, morphology
        # It sits in lung: a good part of its surroundings (one diameter out) is parenchyma,
        # even for juxta-pleural nodules whose other side is chest wall.
        around = PatchSpec(patch_shape_zyx=(3, 3, 3), spacing_mm=min(a.diameter_mm, 10.0))
        ring = patch_hu(source, a.center_xyz, around).reshape(-1)[np.arange(27) != 13]
        assert np.mean(ring < -600.0) >= 0.25, morphology


def test_each_nodule_has_its_rendered_mask(synth_set: Path) -> None:
    """The mask is on the scan's grid, covers each annotated nodule's centre, and its size."""
    series = find_series(synth_set)
    for a in read_annotations(synth_set / "annotations.csv"):
        scan = load_volume(series[a.series_uid])
        mask = load_volume(nodule_mask_path(synth_set, a.series_uid))
        assert mask.geometry == scan.geometry
        assert set(np.unique(mask.hu_zyx).tolist()) <= {0.0, 1.0}
        spec = PatchSpec(patch_shape_zyx=(1, 1, 1), spacing_mm=1.0, hu_window=(0.0, 1.0))
        assert float(extract_patch(mask, a.center_xyz, spec)[0, 0, 0]) > 0.5
        # The mask's volume matches the recorded diameter's ball within a factor of ~2.
        assert a.diameter_mm is not None
        z, y, x = np.round(scan.geometry.world_to_index_zyx(a.center_xyz)).astype(int)
        labels, _ = ndimage.label(mask.hu_zyx > 0.5)
        voxels = int((labels == labels[z, y, x]).sum())
        volume = voxels * float(np.prod(scan.geometry.spacing_xyz))
        ball = np.pi / 6 * a.diameter_mm**3
        assert 0.4 * ball < volume < 2.5 * ball


def test_candidates_have_both_classes_near_truth(synth_set: Path) -> None:
    candidates = read_candidates(synth_set / "candidates_V2.csv")
    annotations = read_annotations(synth_set / "annotations.csv")
    positives = [c for c in candidates if c.label == 1]
    negatives = [c for c in candidates if c.label == 0]
    assert len(negatives) > 10 * len(positives) > 0
    for c in positives:
        near = [
            a
            for a in annotations
            if a.series_uid == c.series_uid
            and np.linalg.norm(np.subtract(a.center_xyz, c.center_xyz)) <= (a.diameter_mm or 0) / 2
        ]
        assert near, "a class-1 candidate must hit an annotated nodule (LUNA16 hit rule)"
    series = find_series(synth_set)
    for c in negatives[:40]:
        assert open_volume(series[c.series_uid]).geometry.contains_world(c.center_xyz)


def test_reads_follow_lidc_rules(synth_set: Path) -> None:
    reads = _rows(synth_set / "reads.csv")
    truth = _rows(synth_set / "nodules_truth.csv")
    by_nodule: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in reads:
        by_nodule[r["synthetic_nodule_id"]].append(r)
    for t in truth:
        group = by_nodule[t["synthetic_nodule_id"]]
        assert len(group) == int(t["n_readers"]) <= 4
        assert len({r["reader_id"] for r in group}) == len(group), "one read per reader"
        assert int(t["in_annotations"]) == (len(group) >= 3)
        for r in group:
            assert r["kind"] == "nodule"
            for name in CHARACTERISTICS:
                upper = 6 if name == "calcification" else 5
                assert 1 <= int(r[name]) <= upper
            offset = np.subtract(
                [float(r["coordX"]), float(r["coordY"]), float(r["coordZ"])],
                [float(t["coordX"]), float(t["coordY"]), float(t["coordZ"])],
            )
            assert np.linalg.norm(offset) < float(t["diameter_mm"]) / 2 + 2.0
    excluded = _rows(synth_set / "annotations_excluded.csv")
    marks = [r for r in reads if r["kind"] in ("small_nodule", "non_nodule")]
    assert all(r["malignancy"] == "" for r in marks)
    assert len(excluded) == sum(1 for t in truth if t["in_annotations"] == "0") + len(
        {r["synthetic_nodule_id"] for r in marks}
    )


def test_dicom_export_gives_the_same_patch(synth_set: Path) -> None:
    (dicom_folder,) = list((synth_set / "dicom").iterdir())
    mhd = find_series(synth_set)[dicom_folder.name]
    annotations = [
        a for a in read_annotations(synth_set / "annotations.csv") if a.series_uid == mhd.stem
    ]
    center = (
        annotations[0].center_xyz
        if annotations
        else load_volume(mhd).geometry.index_zyx_to_world([5, 50, 50])
    )
    a = extract_patch(open_volume(mhd), center, DEFAULT_SPEC)
    b = extract_patch(open_volume(dicom_folder), center, DEFAULT_SPEC)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_describe_finds_no_problem(synth_set: Path) -> None:
    summary = describe(synth_set, DEFAULT_SPEC)
    assert summary.problems == []
    assert summary.n_series == 4
    assert summary.n_annotations == len(read_annotations(synth_set / "annotations.csv"))
    assert summary.center_hu_median > -400.0


@pytest.mark.parametrize(
    ("ratings", "morphology"),
    [
        ([4, 1, 6, 4, 4, 1, 1, 1, 3], "ground_glass"),
        ([4, 1, 6, 4, 4, 1, 1, 3, 3], "part_solid"),
        # Texture 4 ("solid/mixed") is part-solid by the one rule (model.clinical.labels).
        ([4, 1, 6, 4, 4, 1, 1, 4, 3], "part_solid"),
        ([5, 1, 3, 5, 5, 1, 1, 5, 1], "calcified"),
        ([5, 1, 6, 3, 2, 3, 5, 5, 5], "spiculated"),
        ([5, 1, 6, 3, 3, 4, 1, 5, 4], "lobulated"),
        ([4, 1, 6, 4, 4, 1, 1, 5, 2], "solid"),
    ],
)
def test_morphology_follows_consensus(ratings: list[int], morphology: str) -> None:
    from indexer.data.synth.profiles import NoduleProfile, ReaderRatings

    readers = tuple(ReaderRatings(slot, Characteristics(*ratings)) for slot in (1, 2, 3))
    design = design_nodule(
        NoduleProfile("x", 8.0, readers), np.zeros(3), False, np.random.default_rng(0)
    )
    assert design.morphology == morphology
    if morphology == "ground_glass":
        assert design.hu < -400
    if morphology == "calcified":
        assert design.hu > 200 or design.core_hu > 300
    if morphology == "spiculated":
        assert len(design.spikes) >= 9


@pytest.mark.shared_data
def test_real_lidc_table_drives_the_reads(shared_data: Path) -> None:
    profiles = load_profiles(shared_data / "lidc_maxslice" / TABLE_NAME)
    assert len(profiles) > 2500
    diameters = np.array([p.diameter_mm for p in profiles])
    assert diameters.min() >= 3.0
    assert diameters.max() <= 30.0
    assert 5.0 < float(np.median(diameters)) < 10.0
    counts = np.bincount([len(p.readers) for p in profiles], minlength=5)
    assert counts[1:].min() > 400, "every number of readers 1..4 is well represented"
    # Reader disagreement is real: many nodules with >= 2 readers have a malignancy spread.
    spread = [
        max(r.ratings.malignancy for r in p.readers) - min(r.ratings.malignancy for r in p.readers)
        for p in profiles
        if len(p.readers) >= 2
    ]
    assert np.mean(np.asarray(spread) >= 2) > 0.1
