"""``nodule-index`` commands end to end (in-process, through ``main(argv)``)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from indexer.cli import main, parse_center_xyz
from indexer.luna import find_series, read_annotations
from model.ct import open_volume
from model.preprocessing import DEFAULT_SPEC, PatchSpec, extract_patch
from tests.model.synthetic import growable_nodule


def _first_nodule(synth_set: Path) -> tuple[Path, tuple[float, float, float]]:
    a = read_annotations(synth_set / "annotations.csv")[0]
    return find_series(synth_set)[a.series_uid], a.center_xyz


def test_patch_writes_exactly_what_the_model_sees(synth_set: Path, tmp_path: Path) -> None:
    mhd, center = _first_nodule(synth_set)
    out = tmp_path / "patch.npy"
    x, y, z = center
    # Negative coordinates as separate tokens must not be taken for options.
    assert main(["patch", "--volume", str(mhd), "--center", f"{x},{y},{z}", "--out", str(out)]) == 0
    patch = np.load(out)
    assert patch.dtype == np.float32
    assert patch.shape == DEFAULT_SPEC.patch_shape_zyx
    np.testing.assert_array_equal(patch, extract_patch(open_volume(mhd), center, DEFAULT_SPEC))


def test_patch_uses_the_model_card_spec(synth_set: Path, tmp_path: Path) -> None:
    mhd, center = _first_nodule(synth_set)
    spec = PatchSpec(patch_shape_zyx=(16, 20, 24), spacing_mm=0.8, hu_window=(-1200.0, 600.0))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "card.json").write_text(json.dumps({"preprocessing": spec.model_dump()}))
    out = tmp_path / "patch.npy"
    args = ["patch", "--volume", str(mhd), "--center", ",".join(map(str, center))]
    assert main([*args, "--model", str(model_dir), "--out", str(out)]) == 0
    np.testing.assert_array_equal(np.load(out), extract_patch(open_volume(mhd), center, spec))


def test_patch_from_a_dicom_folder(synth_set: Path, tmp_path: Path) -> None:
    (folder,) = list((synth_set / "dicom").iterdir())
    geometry = open_volume(folder).geometry
    center = geometry.index_zyx_to_world([geometry.shape_zyx[0] // 2, 40, 40])
    out = tmp_path / "p.npy"
    text = ",".join(f"{v:.3f}" for v in center)
    assert main(["patch", "--volume", str(folder), "--center", text, "--out", str(out)]) == 0
    assert np.load(out).shape == DEFAULT_SPEC.patch_shape_zyx


@pytest.mark.parametrize(
    ("volume", "center", "message"),
    [
        ("MHD", "9999,0,0", "outside the volume"),
        ("missing.mhd", "0,0,0", "no such file"),
        ("MHD", "nan,0,0", ""),  # argparse refuses it and prints usage
    ],
)
def test_patch_errors_exit_2_with_a_message(
    synth_set: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    volume: str,
    center: str,
    message: str,
) -> None:
    mhd, _ = _first_nodule(synth_set)
    path = mhd if volume == "MHD" else tmp_path / volume
    with caplog.at_level(logging.ERROR):
        code = main(
            ["patch", "--volume", str(path), "--center", center, "--out", str(tmp_path / "p.npy")]
        )
    assert code == 2
    assert message in caplog.text
    assert not (tmp_path / "p.npy").exists()


def test_bad_card_is_refused(
    synth_set: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mhd, center = _first_nodule(synth_set)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "card.json").write_text(json.dumps({"preprocessing": {"hu_window": [400, -1000]}}))
    args = ["patch", "--volume", str(mhd), "--center", ",".join(map(str, center))]
    assert main([*args, "--model", str(model_dir), "--out", str(tmp_path / "p.npy")]) == 2
    assert "hu_window" in caplog.text


def test_center_parsing() -> None:
    assert parse_center_xyz("-1.5,2,-3e1") == (-1.5, 2.0, -30.0)
    with pytest.raises(Exception, match="3 finite"):
        parse_center_xyz("1,2")


def test_synth_and_describe_commands(tmp_path: Path, tiny_table: Path) -> None:
    out = tmp_path / "set"
    args = [
        "synth",
        "--out",
        str(out),
        "--scans",
        "2",
        "--matrix",
        "96",
        "--lidc-table",
        str(tiny_table),
    ]
    assert main([*args, "--workers", "2", "--dicom-scans", "0"]) == 0
    assert len(find_series(out)) == 2
    assert not (out / "dicom").exists()
    assert main([*args]) == 2  # exists: needs --overwrite
    assert main(["describe", "--data", str(out)]) == 0


def test_synth_without_table_says_where_to_get_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    code = main(["synth", "--out", str(tmp_path / "x"), "--lidc-table", str(tmp_path / "none.csv")])
    assert code == 2
    assert "--lidc-table" in caplog.text


@pytest.mark.slow
def test_console_script_entry_point_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "indexer", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "synth" in result.stdout
    assert "patch" in result.stdout


def test_report_writes_the_sr_of_a_search(app_index: Path, synth_set: Path, tmp_path: Path) -> None:
    folder = next((synth_set / "dicom").iterdir())
    geometry = open_volume(folder).geometry
    middle = np.asarray(geometry.shape_zyx, dtype=np.float64) / 2
    x, y, z = (float(v) for v in geometry.index_zyx_to_world(middle))
    out = tmp_path / "sr.dcm"
    args = ["report", "--index", str(app_index), "--series", str(folder)]
    args += ["--center", f"{x},{y},{z}", "--k", "3", "--device", "cpu", "--out", str(out)]
    assert main(args) == 0
    sr = pydicom.dcmread(out)
    header = pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True)
    assert sr.Modality == "SR"
    assert sr.StudyInstanceUID == header.StudyInstanceUID
    groups = sr.ContentSequence[-2].ContentSequence
    assert len(groups) == 1 + 3 + 1  # the query, three neighbours, the vote
    not_dicom = ["report", "--index", str(app_index), "--series", str(tmp_path)]
    assert main([*not_dicom, "--center", f"{x},{y},{z}", "--out", str(tmp_path / "x.dcm")]) == 2


def test_report_writes_the_seg_beside_the_sr(
    app_index: Path, synth_set: Path, tmp_path: Path
) -> None:
    source, (x, y, z) = growable_nodule(synth_set)
    out, seg_out = tmp_path / "sr.dcm", tmp_path / "seg.dcm"
    args = ["report", "--index", str(app_index), "--series", str(source.folder)]
    args += ["--center", f"{x},{y},{z}", "--device", "cpu", "--out", str(out)]
    assert main([*args, "--seg-out", str(seg_out)]) == 0
    sr, seg = pydicom.dcmread(out), pydicom.dcmread(seg_out)
    assert seg.Modality == "SEG"
    assert seg.StudyInstanceUID == sr.StudyInstanceUID
    # The SR's volumetric group carries the size on the SEG's segment (TID 1411).
    query_groups = sr.ContentSequence[-2].ContentSequence[:2]
    assert seg.SOPInstanceUID in str(query_groups[1])
