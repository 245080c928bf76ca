"""Wrong folders in the service's settings: one line naming them, not a lifespan traceback."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import AppSettings
from app.state import IndexDirError, Serving, index_dir_problem
from model.store.layout import LayoutError


def _serve(index_dir: Path) -> subprocess.CompletedProcess[str]:
    """``nodule-api`` (``python -m app``) with ``NODULE_INDEX_DIR=index_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODULE_")}
    env |= {"NODULE_INDEX_DIR": str(index_dir), "NODULE_DEVICE": "cpu", "NODULE_PORT": "9"}
    return subprocess.run(
        [sys.executable, "-m", "app"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_a_missing_index_dir_stops_the_service_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    done = _serve(missing)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"nodule-api: error: NODULE_INDEX_DIR={missing}: no such folder "
        "(expected a catalogue folder made by nodule-index build)"
    ]


def test_a_folder_without_a_catalogue_stops_the_service_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "subset0").mkdir()  # a data folder, say
    done = _serve(tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"nodule-api: error: NODULE_INDEX_DIR={tmp_path}: holds no catalogue")
    assert "CURRENT and versions/<version>/" in line


def test_versions_without_current_are_no_catalogue_to_serve(tmp_path: Path) -> None:
    (tmp_path / "versions").mkdir()
    problem = index_dir_problem(tmp_path)
    assert problem is not None
    assert "no CURRENT" in problem


def test_the_lifespan_raises_a_clear_error_and_logs_the_data_root(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_root = tmp_path / "no-such-data"
    settings = AppSettings(index_dir=tmp_path / "none", data_dir=data_root, device="cpu")
    with (
        caplog.at_level(logging.INFO, logger="app.state"),
        pytest.raises(IndexDirError, match="no such folder") as raised,
        TestClient(create_app(settings)),
    ):
        pass
    assert isinstance(raised.value, LayoutError)  # what a missing catalogue raised before
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert str(data_root) in warning.getMessage()
    assert "does not exist" in warning.getMessage()


def test_an_existing_data_root_is_logged_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = AppSettings(index_dir=tmp_path / "none", data_dir=tmp_path, device="cpu")
    with caplog.at_level(logging.INFO, logger="app.state"), pytest.raises(IndexDirError):
        Serving(settings)
    records = [r for r in caplog.records if r.name == "app.state"]
    assert [r.levelno for r in records] == [logging.INFO]
    assert records[0].getMessage() == f"data root: {tmp_path} (NODULE_DATA_DIR)"
