"""``nodule-index import-crops``: crops + a table into the LUNA16 layout build and evaluate read."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from indexer.cli import main as nodule_index
from indexer.data.crops import (
    CropColumns,
    CropImportError,
    import_crops,
    patient_subset,
    read_crop_table,
)
from indexer.data.luna import find_series, nodule_mask_path, read_annotations
from indexer.data.synth.heldout import HELDOUT_PATIENTS
from indexer.labels.build import read_labels
from model.ct.open import load_volume

HEADER = ["patient_id", "coordX", "coordY", "coordZ", "diameter_mm", "dlwpt_mal_details", "image"]


def _crop(path: Path, origin_xyz: tuple[float, float, float], flip_x: bool = False) -> None:
    """A 20 x 24 x 8 int16 crop with a bright ball at its centre, written by SimpleITK."""
    hu = np.full((8, 24, 20), -850, dtype=np.int16)
    zz, yy, xx = np.indices(hu.shape)
    hu[(zz - 4) ** 2 * 4 + (yy - 12) ** 2 + (xx - 10) ** 2 <= 16] = 30
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((0.7, 0.7, 2.0))
    image.SetOrigin(origin_xyz)
    if flip_x:
        image.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def _center(path: Path) -> list[float]:
    g = load_volume(path).geometry
    return [float(v) for v in g.index_zyx_to_world([4, 12, 10])]


def _collection(tmp_path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """Crops named ``rows[i][1]`` for patients ``rows[i][0]`` with ratings ``rows[i][2]``."""
    table = tmp_path / "src" / "nodules.csv"
    table.parent.mkdir(parents=True)
    with table.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for k, (patient, name, ratings) in enumerate(rows):
            image = tmp_path / "src" / "images" / name
            _crop(image, (10.0 * k, -5.0 * k, -100.0 - k), flip_x=k % 2 == 1)
            writer.writerow([patient, *_center(image), 6.0 + k, ratings, f"images/{name}"])
    return table


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_crops_become_a_luna16_folder(tmp_path: Path) -> None:
    table = _collection(
        tmp_path,
        [
            ("P1", "P1_a.nii.gz", "[5, 5, 4]"),
            ("P1", "P1_b.nii.gz", "[1, 2, 1]"),
            ("P2", "P2_a.mha", "[3, 3, 3]"),
            ("P3", "P3_a.nii.gz", "2;2;1;2"),
        ],
    )
    out = tmp_path / "luna"
    summary = import_crops(table, table.parent, out)
    series = find_series(out)
    assert sorted(series) == ["P1_a", "P1_b", "P2_a", "P3_a"]
    # A patient's crops share a subset: subsets are patient-grouped folds.
    assert series["P1_a"].parent == series["P1_b"].parent
    assert series["P1_a"].parent.name == f"subset{patient_subset('P1', 10)}"
    annotations = {a.series_uid: a for a in read_annotations(out / "annotations.csv")}
    for row in _rows(table):
        crop_id = Path(row["image"]).name.split(".")[0]
        source = load_volume(table.parent / row["image"])
        copied = load_volume(series[crop_id])
        # Same voxels and the same world frame (direction included), so the centre still hits
        # the ball.
        np.testing.assert_array_equal(copied.hu_zyx, source.hu_zyx)
        np.testing.assert_allclose(copied.geometry.direction, source.geometry.direction)
        center = annotations[crop_id].center_xyz
        index = np.round(copied.geometry.world_to_index_zyx(center)).astype(int)
        assert copied.hu_zyx[tuple(index)] == 30
    labels = {r["seriesuid"]: r for r in _rows(out / "labels.csv")}
    assert labels["P1_a"]["label_binary"] == "1"
    assert labels["P1_b"]["label_binary"] == "0"
    assert labels["P2_a"]["label_binary"] == "", "mean 3 is excluded"
    assert labels["P3_a"]["ratings"] == "[2, 2, 1, 2]"
    assert labels["P1_a"]["patient_id"] == "P1"
    patients = {r["seriesuid"]: r["patient_id"] for r in _rows(out / "patients.csv")}
    assert patients == {"P1_a": "P1", "P1_b": "P1", "P2_a": "P2", "P3_a": "P3"}
    assert summary["counts"] == json.loads((out / "crops.json").read_text())["counts"]
    assert summary["counts"]["labelled"] == 3  # type: ignore[index]


def test_the_tables_characteristic_ratings_reach_labels_csv(tmp_path: Path) -> None:
    table = _collection(tmp_path, [("P1", "P1_a.nii.gz", "[5, 4]"), ("P2", "P2_a.nii.gz", "[1]")])
    rows = _rows(table)
    values = {"Subtlety_value": "5", "InternalStructure_value": "1", "Calcification_value": "6"}
    values |= {f"{n}_value": "3" for n in ("Sphericity", "Margin", "Lobulation", "Spiculation")}
    values |= {"Texture_value": "5", "Malignancy_value": "4"}
    with table.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*rows[0], *values, "mask"])
        writer.writeheader()
        # The first crop's mask: the crop itself (its ball of 30 HU in -800 lung is > 0.5).
        writer.writerow(rows[0] | values | {"mask": rows[0]["image"]})
        writer.writerow(rows[1] | dict.fromkeys(values, ""))  # no ratings: none, not an error
    import_crops(table, table.parent, tmp_path / "luna")
    mask = load_volume(nodule_mask_path(tmp_path / "luna", "P1_a"))
    image = load_volume(table.parent / rows[0]["image"])
    np.testing.assert_array_equal(mask.hu_zyx, (image.hu_zyx > 0.5).astype(np.float32))
    assert not nodule_mask_path(tmp_path / "luna", "P2_a").exists()
    labels = {n.series_uid: n for n in read_labels(tmp_path / "luna" / "labels.csv")}
    (consensus,) = labels["P1_a"].characteristics
    assert consensus.as_dict()["calcification"] == 6
    assert consensus.malignancy == 4
    assert labels["P1_a"].label.ratings == (5, 4)  # the readers' own malignancy stays
    assert labels["P2_a"].characteristics == ()
    rows = _rows(table)
    with table.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerow(rows[0] | {"Texture_value": "9"})
    with pytest.raises(CropImportError, match="line 2: characteristic ratings: texture"):
        import_crops(table, table.parent, tmp_path / "luna")


def test_held_out_patients_crops_are_never_read(tmp_path: Path) -> None:
    """Every set made from a crop table (a catalogue, real-set training) leaves them out."""
    held_out = sorted(HELDOUT_PATIENTS)[0]
    table = _collection(
        tmp_path, [("P1", "P1_a.nii.gz", "[5, 5, 4]"), (held_out, "H_a.nii.gz", "[1, 1, 2]")]
    )
    rows = _rows(table)
    with table.open("w", newline="") as f:  # both with a mask (the mask branch's targets)
        writer = csv.DictWriter(f, fieldnames=[*rows[0], "mask"])
        writer.writeheader()
        writer.writerows(r | {"mask": r["image"]} for r in rows)
    crops = read_crop_table(table, table.parent, CropColumns())
    assert [c.patient_id for c in crops] == ["P1"]
    out = tmp_path / "luna"
    import_crops(table, table.parent, out)
    assert sorted(find_series(out)) == ["P1_a"]
    assert held_out not in (out / "patients.csv").read_text()
    # Nor does its mask: the only mask a trainer can find is the kept patient's.
    assert sorted(p.name for p in (out / "nodule_masks").glob("*.mhd")) == ["P1_a.mhd"]


def test_a_crop_that_misses_its_nodule_fails_or_is_skipped(tmp_path: Path) -> None:
    table = _collection(
        tmp_path, [("P1", "P1_a.nii.gz", "[5, 5, 4]"), ("P2", "P2_a.nii.gz", "[1, 1, 1]")]
    )
    rows = _rows(table)
    rows[1]["coordZ"] = "400.0"  # far outside that crop
    with table.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HEADER)
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(CropImportError, match=r"P2_a.nii.gz: the nodule centre .* outside"):
        import_crops(table, table.parent, tmp_path / "a")
    summary = import_crops(table, table.parent, tmp_path / "b", skip_bad=True)
    assert list(summary["skipped"]) == ["P2_a"]  # type: ignore[call-overload]
    assert sorted(find_series(tmp_path / "b")) == ["P1_a"]
    code = nodule_index(
        ["import-crops", "--csv", str(table), "--out", str(tmp_path / "c"), "--on-error", "skip"]
    )
    assert code == 0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"image": "../../outside.nii.gz"}, "is not inside"),
        ({"dlwpt_mal_details": "[5, 9]"}, "must be 1..5"),
        ({"coordX": "nan"}, "not finite"),
        ({"patient_id": ""}, "no patient id"),
    ],
)
def test_bad_rows_are_named(tmp_path: Path, edit: dict[str, str], message: str) -> None:
    table = _collection(tmp_path, [("P1", "P1_a.nii.gz", "[5, 5, 4]")])
    (row,) = _rows(table)
    row.update(edit)
    with table.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HEADER)
        writer.writeheader()
        writer.writerow(row)
    with pytest.raises(CropImportError, match=message):
        import_crops(table, table.parent, tmp_path / "out")


def test_never_writes_over_a_foreign_folder(tmp_path: Path) -> None:
    table = _collection(tmp_path, [("P1", "P1_a.nii.gz", "[5, 5, 4]")])
    foreign = tmp_path / "data"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(CropImportError, match="refusing"):
        import_crops(table, table.parent, foreign)
    out = tmp_path / "out"
    import_crops(table, table.parent, out)
    import_crops(table, table.parent, out)  # an earlier import is replaced
    assert sorted(find_series(out)) == ["P1_a"]
    assert import_crops(table, table.parent, out, columns=CropColumns())["counts"]


@pytest.mark.shared_data
@pytest.mark.slow  # real CT: make test, not make test-fast
def test_real_vois_build_and_evaluate(shared_data: Path, app_model: Path, tmp_path: Path) -> None:
    """A small fixed subset of the real LIDC VOIs through import, build and evaluate.

    Checks the report's structure and its baselines, never a score (scores are benchmarks).
    """
    source = shared_data / "lidc_vois" / "nodules.csv"
    with source.open(newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = [r for r in reader if r["patient_id"] < "LIDC-IDRI-0030"]
    assert len(rows) >= 8
    table = tmp_path / "subset.csv"
    with table.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    out, index, report_dir = tmp_path / "luna", tmp_path / "index", tmp_path / "report"
    images = ["--images", str(source.parent)]
    assert nodule_index(["import-crops", "--csv", str(table), *images, "--out", str(out)]) == 0
    build = ["build", "--data", str(out), "--model", str(app_model), "--index", str(index)]
    assert nodule_index([*build, "--labels", str(out / "labels.csv"), "--no-progress"]) == 0
    evaluate = ["evaluate", "--index", str(index), "--out", str(report_dir), "--bootstrap", "20"]
    assert nodule_index([*evaluate, "--workers", "1"]) == 0
    report = json.loads((report_dir / "report.json").read_text())
    labelled = sum(1 for r in _rows(out / "labels.csv") if r["label_binary"])
    assert report["n_queries"] == labelled
    assert report["n_nodules"] == len(rows)
    assert set(report["baselines"]) == {
        "raw",
        "random_init",
        "diameter",
        "diameter_raw",
        "diameter_density",
        "measured",
    }
    assert set(report["paired_vs_baselines"]) == set(report["baselines"])
    for section in (report, *report["baselines"].values()):
        # The VOI table's consensus ratings reach the catalogue and the looks-alike metrics.
        assert section["looks_alike"]["n_rated_queries"] == labelled
        assert set(section["recall_at_k"]) == {"binary", "four_class"}
        assert section["recall_counts"]["binary"]["1"]["queries"] == labelled
