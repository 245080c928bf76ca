"""POST /v1/admin/reload: key required, switches versions, loses no request in flight."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.main import create_app
from app.settings import AppSettings
from indexer.cli import main as nodule_index
from model.store.catalog import Catalog
from model.store.layout import IndexLayout
from model.store.tables import Nodule

KEY = "test-key-123"


@pytest.fixture(scope="module")
def two_versions(
    synth_set: Path, app_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    index = tmp_path_factory.mktemp("reload") / "index"
    for _ in range(2):
        args = ["build", "--data", str(synth_set), "--model", str(app_model), "--index", str(index)]
        assert nodule_index([*args, "--no-progress", "--workers", "1"]) == 0
    return index


@pytest.fixture(scope="module")
def admin_client(two_versions: Path, synth_set: Path) -> Iterator[TestClient]:
    settings = AppSettings(
        index_dir=two_versions, data_dir=synth_set, device="cpu", api_key=SecretStr(KEY)
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_reload_needs_the_key(admin_client: TestClient, client: TestClient) -> None:
    assert admin_client.post("/v1/admin/reload").status_code == 401
    assert admin_client.post("/v1/admin/reload", headers={"X-API-Key": "wrong"}).status_code == 401
    # Without a configured key, admin endpoints are off.
    assert client.post("/v1/admin/reload", headers={"X-API-Key": KEY}).status_code == 403


def test_rollback_then_reload_switches_with_no_failed_request(
    admin_client: TestClient, two_versions: Path
) -> None:
    layout = IndexLayout(two_versions)
    first, second = layout.versions()
    assert admin_client.get("/v1/index").json()["version"] == second
    catalog = Catalog.open(two_versions)
    with catalog.sessions() as session:
        nodule = session.query(Nodule).first()
        assert nodule is not None
        body = {"series_uid": nodule.series_uid, "center_xyz": list(nodule.center_xyz), "k": 3}
    catalog.close()
    assert nodule_index(["rollback", first, "--index", str(two_versions)]) == 0

    def query(_: int) -> int:
        return admin_client.post("/v1/search/coordinate", json=body).status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        in_flight = [pool.submit(query, i) for i in range(24)]
        reloaded = admin_client.post("/v1/admin/reload", headers={"X-API-Key": KEY})
        statuses = [f.result() for f in in_flight]
    assert reloaded.status_code == 200
    assert reloaded.json()["index_version"] == first
    assert statuses == [200] * 24
    assert admin_client.get("/v1/index").json()["version"] == first
    assert admin_client.get("/readyz").status_code == 200


@pytest.fixture(scope="module")
def one_version(synth_set: Path, app_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    index = tmp_path_factory.mktemp("leased") / "index"
    args = ["build", "--data", str(synth_set), "--model", str(app_model), "--index", str(index)]
    assert nodule_index([*args, "--no-progress", "--workers", "1"]) == 0
    return index


def _build(index: Path, synth_set: Path, app_model: Path, keep: int) -> None:
    args = ["build", "--data", str(synth_set), "--model", str(app_model), "--index", str(index)]
    assert nodule_index([*args, "--no-progress", "--workers", "1", "--keep", str(keep)]) == 0


def test_a_build_never_prunes_the_version_a_service_serves_and_a_vanished_one_falls_back(
    one_version: Path, synth_set: Path, app_model: Path
) -> None:
    layout = IndexLayout(one_version)
    (served,) = layout.versions()
    settings = AppSettings(index_dir=one_version, data_dir=synth_set, device="cpu")
    with TestClient(create_app(settings)) as client:
        series_uid = client.get("/v1/scans").json()["scans"][0]["series_uid"]
        nodule_id = client.get(f"/v1/scans/{series_uid}").json()["nodules"][0]["id"]
        _build(one_version, synth_set, app_model, keep=1)
        _build(one_version, synth_set, app_model, keep=1)
        # --keep 1 pruned the middle version but not the one this service holds.
        versions = layout.versions()
        assert len(versions) == 2
        assert versions[0] == served
        newest = versions[1]
        assert layout.current() == newest
        assert client.get("/v1/index").json()["version"] == served
        assert client.get(f"/v1/nodules/{nodule_id}").status_code == 200

        # Removed by hand anyway: the next request falls back to CURRENT.
        shutil.rmtree(layout.version_dir(served))
        assert client.get("/readyz").json()["index_version"] == newest
        assert client.get(f"/v1/nodules/{nodule_id}").status_code == 200
        assert client.get("/v1/index").json()["version"] == newest

        # And when CURRENT's version is gone too: 503 saying so, never a 500.
        shutil.rmtree(layout.version_dir(newest))
        for path in ("/readyz", "/v1/index", f"/v1/nodules/{nodule_id}", "/v1/scans"):
            answer = client.get(path)
            assert answer.status_code == 503, path
            assert "removed from disk" in answer.json()["detail"]
        leases = list((one_version / "leases").glob("*.json"))
        assert len(leases) == 1
    # Shut down: the lease is gone with the service.
    assert not list((one_version / "leases").glob("*.json"))
