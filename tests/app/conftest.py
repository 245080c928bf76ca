"""A test client whose lifespan loads the small synthetic catalogue (``app_index``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import AppSettings


@pytest.fixture(scope="session")
def client(app_index: Path, synth_set: Path) -> Iterator[TestClient]:
    settings = AppSettings(index_dir=app_index, data_dir=synth_set, device="cpu")
    with TestClient(create_app(settings)) as test_client:
        yield test_client
