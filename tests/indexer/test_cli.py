"""``nodule-index`` commands end to end (in-process, through ``main(argv)``)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import AppSettings
from indexer import cli_paths
from indexer.build.arguments import INDEX_TYPES
from indexer.cli import RUNNERS, build_parser, main, parse_center_xyz
from indexer.data.arguments import CROP_COLUMNS
from indexer.data.luna import find_series, read_annotations
from indexer.labels.arguments import EXCLUDE_THREE
from indexer.train.arguments import RECIPE_OPTIONS
from model.ct.open import open_volume
from model.preprocessing import DEFAULT_SPEC, PatchSpec, extract_patch
from model.store.layout import IndexLayout
from tests.helpers.dicom import content_items
from tests.helpers.synthetic import growable_nodule


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
    assert len(groups) == 2 + 3 + 1  # the query (on its slice, in 3-D), three neighbours, the vote
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
    query_groups = sr.ContentSequence[-2].ContentSequence[:3]
    assert seg.SOPInstanceUID in str(query_groups[2])


def test_report_leaves_out_what_the_service_leaves_out(
    app_index: Path, synth_set: Path, tmp_path: Path
) -> None:
    """The CLI's SR names the neighbours the service answers: the queried nodule and its patient
    left out (unless asked), the same weak-match marks, a vote only with a close match."""
    source, center = growable_nodule(synth_set)
    settings = AppSettings(index_dir=app_index, data_dir=synth_set, device="cpu")
    with TestClient(create_app(settings)) as client:
        for own in (False, True):
            body = {"series_uid": source.series_uid, "center_xyz": list(center), "k": 3}
            screen = client.post(
                "/v1/search/coordinate", json={**body, "include_own_patient": own}
            ).json()
            out = tmp_path / f"sr-{own}.dcm"
            args = ["report", "--index", str(app_index), "--series", str(source.folder)]
            args += ["--center", ",".join(str(v) for v in center), "--k", "3"]
            args += ["--device", "cpu", "--out", str(out)]
            assert main([*args, "--include-own-patient"] if own else args) == 0
            titles = [  # the neighbour groups' and the vote group's (model.clinical.sr)
                str(i.TextValue)
                for i in content_items(pydicom.dcmread(out).ContentSequence)
                if i.ConceptNameCodeSequence[0].CodeValue in ("SIM018", "SIM019")
            ]
            expected = [
                f"similar case {rank}: catalogue nodule {n['id']}"
                + (" (weak match)" if n["weak_match"] else "")
                for rank, n in enumerate(screen["neighbors"], start=1)
            ]
            assert [t for t in titles if t.startswith("similar case")] == expected
            withheld = any(t.startswith("similar-case vote withheld") for t in titles)
            assert withheld is screen["vote"]["withheld"]


# --- a light parser: --help and usage errors import nothing heavy (issue 26) -----------------

HEAVY = ("torch", "faiss", "SimpleITK", "highdicom", "matplotlib", "scipy", "sklearn", "pydicom")

_LIGHT_RUN = """
import contextlib, io, json, sys
from indexer import cli
parser = cli.build_parser()
calls = [["--help"], ["build"], ["evaluate", "--index", "nope", "--out", "out"]]
calls += [[name, "--help"] for name in cli.RUNNERS]
codes = []
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    for argv in calls:
        codes.append(cli.main(argv))
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[1:]))
sys.stdout.write(json.dumps({"codes": codes, "heavy": heavy}))
"""


def _nodule_index(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "indexer", *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_help_and_usage_errors_import_nothing_heavy() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _LIGHT_RUN, *HEAVY],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result = json.loads(done.stdout)
    assert result["heavy"] == []
    assert result["codes"][:3] == [0, 2, 2]
    assert set(result["codes"][3:]) == {0}


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices)


def test_help_is_plain_text_with_a_line_per_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "``" not in text
    assert text.startswith("usage: nodule-index")
    subcommands = _subcommands()
    assert set(subcommands) == set(RUNNERS)
    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
    for name, sub in subcommands.items():
        assert helps[name], name
        assert "\n" not in helps[name], name
        assert helps[name] in " ".join(text.split()), name
        assert sub.description, name
        assert "``" not in sub.description, name


def test_every_command_runner_resolves() -> None:
    for name, where in RUNNERS.items():
        module, _, function = where.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), name


def test_light_copies_match_their_heavy_originals() -> None:
    from indexer.data.crops import CropColumns
    from indexer.train.trainer import TrainConfig
    from model.clinical.labels import ExcludeThree
    from model.nn.card import CARD_FILE
    from model.store.vector_index import INDEX_TYPES as FAISS_INDEX_TYPES

    assert INDEX_TYPES == FAISS_INDEX_TYPES
    assert tuple(e.value for e in ExcludeThree) == EXCLUDE_THREE
    assert dataclasses.asdict(CropColumns()) == CROP_COLUMNS
    assert cli_paths.CARD_FILE == CARD_FILE
    assert set(RECIPE_OPTIONS) <= set(TrainConfig.model_fields)


# --- wrong paths: one line naming the path and what was expected ------------------------------


@pytest.mark.parametrize("command", ["evaluate", "verify", "versions"])
def test_a_missing_index_folder_is_named_in_one_line(command: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    extra = ["--out", str(tmp_path / "report")] if command == "evaluate" else []
    done = _nodule_index(command, "--index", str(missing), *extra)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"nodule-index: error: --index {missing}: no such folder "
        "(expected a catalogue folder made by nodule-index build)"
    ]


@pytest.mark.parametrize("command", ["evaluate", "verify", "versions"])
def test_a_data_folder_is_no_catalogue(command: str, synth_set: Path, tmp_path: Path) -> None:
    extra = ["--out", str(tmp_path / "report")] if command == "evaluate" else []
    done = _nodule_index(command, "--index", str(synth_set), *extra)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert f"--index {synth_set}: holds no catalogue" in line
    assert "CURRENT and versions/<version>/" in line  # what a catalogue folder holds
    assert "Traceback" not in done.stderr


def test_versions_lists_on_stdout(app_index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["versions", "--index", str(app_index)]) == 0
    lines = capsys.readouterr().out.splitlines()
    layout = IndexLayout(app_index)
    # "* <version>  <n> nodules  <type>  model <fingerprint>  parent <version>", * = current
    assert [line[2:].split()[0] for line in lines] == layout.versions()
    assert [line[2:].split()[0] for line in lines if line.startswith("*")] == [layout.current()]


def _missing_input_cases(missing: Path, out: Path) -> dict[str, list[str]]:
    """For each command, a call whose first checked input path is ``missing``."""
    m, o = str(missing), str(out)
    return {
        "synth": ["--out", o, "--lidc-table", m],
        "patch": ["--volume", m, "--center", "0,0,0", "--out", f"{o}/p.npy"],
        "import-crops": ["--csv", m, "--out", o],
        "real-set": ["--shared", m, "--out", o],
        "labels": ["--annotations", m, "--out", f"{o}/labels.csv", "--pylidc"],
        "train": ["--data", m, "--out", o],
        "build": ["--data", m, "--model", m, "--index", o],
        "add": ["--data", m, "--index", m],
        "verify": ["--index", m],
        "versions": ["--index", m],
        "rollback": ["20000101T000000000000Z-abcdef", "--index", m],
        "bootstrap": ["--data", o, "--model", o, "--index", o, "--lidc-table", m],
        "evaluate": ["--index", m, "--out", o],
        "report": ["--index", m, "--series", m, "--center", "0,0,0", "--out", f"{o}/sr.dcm"],
        "crossval": ["--data", m, "--out", o],
        "describe": ["--data", m],
    }


def test_every_command_has_a_missing_path_case(tmp_path: Path) -> None:
    assert set(_missing_input_cases(tmp_path, tmp_path)) == set(RUNNERS)


@pytest.mark.parametrize("command", sorted(RUNNERS))
def test_a_missing_input_path_is_one_line_naming_it(command: str, tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist"
    argv = _missing_input_cases(missing, tmp_path / "out")[command]
    done = _nodule_index(command, *argv)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("nodule-index: error: --")
    assert f" {missing}: no such " in line
    assert "(expected " in line
    assert not (tmp_path / "out").exists()  # nothing was written


def test_an_output_folder_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "report").write_text("not a folder")
    done = _nodule_index("synth", "--out", str(tmp_path / "report"))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"nodule-index: error: --out {tmp_path / 'report'}: is a file "
        "(expected a folder to write into (made when missing))"
    ]


def test_a_model_folder_without_a_card_is_refused(tmp_path: Path, synth_set: Path) -> None:
    done = _nodule_index("describe", "--data", str(synth_set), "--model", str(tmp_path))
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert f"--model {tmp_path}: holds no card.json" in line


def test_a_wrong_path_in_a_bootstrap_step_goes_to_its_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # With logging set up (bootstrap's steps, tests), the one line is a log record.
    with caplog.at_level(logging.ERROR):
        assert main(["verify", "--index", str(tmp_path / "none")]) == 2
    assert [r.getMessage() for r in caplog.records] == [
        f"--index {tmp_path / 'none'}: no such folder "
        "(expected a catalogue folder made by nodule-index build)"
    ]
