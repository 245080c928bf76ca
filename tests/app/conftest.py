"""A small synthetic catalogue and a test client whose lifespan loads it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import AppSettings
from indexer.cli import main as nodule_index
from model.checkpoint import save_model
from model.network import NetworkConfig, NoduleNet
from model.preprocessing import PatchSpec

SPEC = PatchSpec(patch_shape_zyx=(16, 16, 16), spacing_mm=2.5)


@pytest.fixture(scope="session")
def app_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    network = NoduleNet(NetworkConfig(width=4, levels=3))
    network.train()
    with torch.no_grad():
        network(torch.rand(4, 1, 16, 16, 16))
    path = tmp_path_factory.mktemp("app_model") / "m"
    save_model(path, network.eval(), SPEC, code_version="test")
    return path


@pytest.fixture(scope="session")
def app_index(synth_set: Path, app_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    index = tmp_path_factory.mktemp("app_index") / "index"
    args = ["build", "--data", str(synth_set), "--model", str(app_model), "--index", str(index)]
    assert nodule_index([*args, "--no-progress", "--workers", "1"]) == 0
    return index


@pytest.fixture(scope="session")
def client(app_index: Path, synth_set: Path) -> Iterator[TestClient]:
    settings = AppSettings(index_dir=app_index, data_dir=synth_set, device="cpu")
    with TestClient(create_app(settings)) as test_client:
        yield test_client
