"""A test client whose lifespan loads the small synthetic catalogue (``app_index``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import AppSettings
from tests.helpers.live_server import live_api


@pytest.fixture(scope="session")
def client(app_index: Path, synth_set: Path) -> Iterator[TestClient]:
    settings = AppSettings(index_dir=app_index, data_dir=synth_set, device="cpu")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def server(
    app_index: Path, synth_set: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    env = {
        "NODULE_INDEX_DIR": str(app_index),
        "NODULE_DATA_DIR": str(synth_set),
        "NODULE_DEVICE": "cpu",
    }
    with live_api(env, tmp_path_factory.mktemp("server") / "server.log") as url:
        yield url
