"""Issue 16's holes, kept shut: body limits on every route, bounded fields naming themselves,
one error shape (problem details) as documented, lookups that reveal nothing and are cached,
the browser's origin policy, access tokens and failed-attempt limits."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.main import create_app, open_access_problem
from app.scans import OpenSources
from app.settings import AppSettings
from model.ct.volume import VolumeReadError
from model.store.catalog import Catalog
from model.store.tables import Nodule

TOKEN = "access-token-for-tests"


def _a_query(app_index: Path) -> dict[str, object]:
    catalog = Catalog.open(app_index)
    with catalog.sessions() as session:
        nodule = session.query(Nodule).order_by(Nodule.id).first()
        assert nodule is not None
        query = {"series_uid": nodule.series_uid, "center_xyz": list(nodule.center_xyz), "k": 3}
    catalog.close()
    return query


def _problem(response: Any, status: int, phrase: str) -> dict[str, Any]:
    """The problem-details body of ``response`` after checking its status and message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert phrase in body["detail"], body["detail"]
    return dict(body)


def test_every_route_limits_its_body(client: TestClient, app_index: Path) -> None:
    huge = b'{"series_uid": "' + b"1" * (2 * 1024 * 1024) + b'"}'
    response = client.post(
        "/v1/search/coordinate", content=huge, headers={"content-type": "application/json"}
    )
    _problem(response, 413, "limit of 256 KB")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams in
        yield b'{"series_uid": "'
        for _ in range(64):
            yield b"1" * 65536
        yield b'"}'

    response = client.post(
        "/v1/search/coordinate", content=chunks(), headers={"content-type": "application/json"}
    )
    _problem(response, 413, "limit of 256 KB")
    assert client.post("/v1/search/coordinate", json=_a_query(app_index)).status_code == 200


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"k": 10**9}, "k: must be at most 50 (NODULE_MAX_K)"),  # one limit, one message
        ({"k": 51}, "k: must be at most 50 (NODULE_MAX_K)"),
        ({"center_xyz": [1e308, 0, 0]}, "center_xyz"),
        ({"filters": {"max_diameter_mm": "Infinity"}}, "filters.max_diameter_mm"),
        ({"filters": {"min_diameter_mm": -1}}, "filters.min_diameter_mm"),
        ({"filters": {"exclude_patient_id": "x" * 200}}, "filters.exclude_patient_id"),
    ],
)
def test_out_of_range_fields_are_422_naming_the_field(
    client: TestClient, app_index: Path, change: dict[str, object], field: str
) -> None:
    body = {**_a_query(app_index), **change}
    problem = _problem(client.post("/v1/search/coordinate", json=body), 422, field)
    if "errors" in problem:
        assert isinstance(problem["errors"], list)


@pytest.mark.parametrize("spacing", ["1e-300,1,1", "1e308,1,1", "0,1,1", "-1,1,1"])
def test_upload_spacing_out_of_range_is_422_naming_spacing(
    client: TestClient, spacing: str
) -> None:
    response = client.post(
        "/v1/search/upload",
        files={"file": ("ct.npy", b"\x93NUMPY")},
        data={"spacing_zyx": spacing},
    )
    _problem(response, 422, "spacing_zyx must lie within 0.01..50")


def test_similar_k_is_bounded(client: TestClient, app_index: Path) -> None:
    catalog = Catalog.open(app_index)
    nodule_id = int(catalog.embeddings.shape[0] > 0)
    catalog.close()
    _problem(client.get(f"/v1/nodules/{nodule_id}/similar", params={"k": 10**9}), 422, "k")


def test_the_documented_error_schema_is_the_one_returned(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    problem = schema["components"]["schemas"]["Problem"]
    assert set(problem["required"]) >= {"title", "status", "detail"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for code, response in operation["responses"].items():
                if code[0] in "45":
                    assert list(response["content"]) == ["application/problem+json"], (
                        path,
                        method,
                        code,
                    )
    metrics = schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")
    # Unknown routes and methods answer the same shape.
    _problem(client.get("/v1/no-such-route"), 404, "Not Found")
    _problem(client.delete("/v1/index"), 405, "Method Not Allowed")
    invalid = client.post("/v1/search/coordinate", json={"center_xyz": [0, 0]})
    body = _problem(invalid, 422, "series_uid")
    assert {e["field"].split(".")[0] for e in body["errors"]} == {"series_uid", "center_xyz"}


def test_a_folder_name_is_not_a_series_and_says_nothing_about_folders(
    client: TestClient, synth_set: Path
) -> None:
    assert (synth_set / "subset0").is_dir()
    answers = []
    for uid in ("subset0", "no-such-folder"):
        response = client.post(
            "/v1/search/coordinate", json={"series_uid": uid, "center_xyz": [0, 0, 0]}
        )
        answers.append((response.status_code, response.json()["detail"].replace(uid, "X")))
    assert answers[0] == answers[1]
    assert answers[0][0] == 404


def test_failed_opens_are_remembered_for_a_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def refuse(path: Path, pacs: object = None, series_uid: str | None = None) -> object:
        calls.append(path)
        raise VolumeReadError(f"{path.name}: no CT image series found")

    monkeypatch.setattr("app.scans.open_source", refuse)
    folder = tmp_path / "1.2.3"
    folder.mkdir()
    sources = OpenSources(capacity=4, failed_ttl_s=60)
    for _ in range(3):
        with pytest.raises(VolumeReadError, match="no CT image series"):
            sources.open(folder, None)
    assert len(calls) == 1
    expired = OpenSources(capacity=4, failed_ttl_s=0)
    for _ in range(2):
        with pytest.raises(VolumeReadError):
            expired.open(folder, None)
    assert len(calls) == 3


def test_foreign_origins_are_refused_and_listed_ones_get_cors(
    app_index: Path, synth_set: Path, client: TestClient
) -> None:
    query = _a_query(app_index)
    evil = {"origin": "https://evil.example"}
    _problem(client.post("/v1/search/coordinate", json=query, headers=evil), 403, "cross-origin")
    _problem(
        client.post("/v1/search/upload", files={"file": ("a.npy", b"")}, headers=evil),
        403,
        "cross-origin",
    )
    # Same origin (the viewer) and non-browser clients (no Origin) pass.
    same = {"origin": "http://testserver"}
    assert client.post("/v1/search/coordinate", json=query, headers=same).status_code == 200
    settings = AppSettings(
        index_dir=app_index,
        data_dir=synth_set,
        device="cpu",
        cors_origins="https://viewer.example, https://pacs.example/",
    )
    with TestClient(create_app(settings)) as listed:
        ok = {"origin": "https://pacs.example"}
        response = listed.post("/v1/search/coordinate", json=query, headers=ok)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://pacs.example"
        preflight = listed.options(
            "/v1/search/coordinate",
            headers={**ok, "access-control-request-method": "POST"},
        )
        assert preflight.status_code == 200
        _problem(listed.post("/v1/search/coordinate", json=query, headers=evil), 403, "origin")


@contextmanager
def _guarded(app_index: Path, synth_set: Path, failures_per_minute: int) -> Iterator[TestClient]:
    settings = AppSettings(
        index_dir=app_index,
        data_dir=synth_set,
        device="cpu",
        access_token=SecretStr(TOKEN),
        api_key=SecretStr("admin-key"),
        auth_failures_per_minute=failures_per_minute,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_an_access_token_guards_every_v1_route(app_index: Path, synth_set: Path) -> None:
    with _guarded(app_index, synth_set, failures_per_minute=100) as guarded:
        _token_is_needed(guarded, app_index)


def _token_is_needed(guarded: TestClient, app_index: Path) -> None:
    query = _a_query(app_index)
    for response in (
        guarded.post("/v1/search/coordinate", json=query),
        guarded.get("/v1/index"),
        guarded.get("/v1/scans"),
        guarded.get("/v1/nodules/1"),
        guarded.get("/v1/map"),
        guarded.post("/v1/search/upload", files={"file": ("a.npy", b"")}),
    ):
        _problem(response, 401, "access token")
        assert response.headers["www-authenticate"] == "Bearer"
    auth = {"authorization": f"Bearer {TOKEN}"}
    assert guarded.post("/v1/search/coordinate", json=query, headers=auth).status_code == 200
    assert guarded.get("/v1/index", headers=auth).status_code == 200
    # Probes and the viewer's files stay open; the OpenAPI document declares the scheme.
    for path in ("/healthz", "/readyz", "/", "/openapi.json"):
        assert guarded.get(path).status_code == 200, path
    schema = guarded.get("/openapi.json").json()
    assert "AccessToken" in schema["components"]["securitySchemes"]
    assert schema["paths"]["/v1/index"]["get"]["security"] == [{"AccessToken": []}]


def test_failures_are_limited_and_the_right_credential_always_passes(
    app_index: Path, synth_set: Path
) -> None:
    with _guarded(app_index, synth_set, failures_per_minute=3) as guarded:
        right = {"authorization": f"Bearer {TOKEN}"}
        for _ in range(3):
            wrong = {"authorization": "Bearer guess"}
            _problem(guarded.get("/v1/index", headers=wrong), 401, "access token")
        # Used up: further failing attempts are refused as too many...
        response = guarded.get("/v1/index", headers={"authorization": "Bearer guess"})
        _problem(response, 429, "too many failed attempts")
        assert int(response.headers["retry-after"]) >= 1
        # ... but the right token always passes: failures lock nobody out.
        for _ in range(3):
            assert guarded.get("/v1/index", headers=right).status_code == 200
        # Admin attempts are counted apart, and the right key passes too.
        for _ in range(3):
            wrong_key = {"x-api-key": "wrong"}
            _problem(guarded.post("/v1/admin/reload", headers=wrong_key), 401, "X-API-Key")
        _problem(guarded.post("/v1/admin/reload", headers={"x-api-key": "wrong"}), 429, "")
        assert (
            guarded.post("/v1/admin/reload", headers={"x-api-key": "admin-key"}).status_code == 200
        )


def test_the_default_has_no_token_and_no_security_scheme(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "securitySchemes" not in schema.get("components", {})
    assert client.get("/v1/index").status_code == 200


def test_a_host_not_allow_listed_is_refused_first(app_index: Path, synth_set: Path) -> None:
    """DNS rebinding: a page of evil.example resolved to loopback must read nothing."""
    settings = AppSettings(index_dir=app_index, data_dir=synth_set, device="cpu")
    assert "evil.example" not in settings.allowed_hosts
    with TestClient(create_app(settings)) as client:
        evil = {"host": "evil.example", "origin": "http://evil.example"}
        answer = client.get("/v1/scans", headers=evil)
        assert answer.status_code == 400
        assert answer.headers["content-type"] == "application/problem+json"
        assert "Host header" in answer.json()["detail"]
        # A Host that cannot even be parsed gets the same problem answer, never plain text.
        odd = client.get("/v1/scans", headers={"host": "index_zyx"})
        assert odd.status_code == 400
        assert odd.headers["content-type"] == "application/problem+json"
        assert "LIDC" not in answer.text
        assert "SYN-" not in answer.text
        assert client.get("/v1/scans", headers={"host": "127.0.0.1:8000"}).status_code == 200
        assert client.get("/healthz", headers={"host": "[::1]:8000"}).status_code == 200
    default = AppSettings.model_fields["allowed_hosts"].get_default(call_default_factory=True)
    assert default == ["localhost", "127.0.0.1", "[::1]"]


@pytest.mark.parametrize(
    ("host", "token", "allow_open", "refused"),
    [
        ("127.0.0.1", None, False, False),
        ("::1", None, False, False),
        ("localhost", None, False, False),
        ("0.0.0.0", None, False, True),
        ("192.0.2.7", None, False, True),
        ("0.0.0.0", "a-long-random-token", False, False),
        ("0.0.0.0", None, True, False),
    ],
)
def test_an_open_service_beyond_loopback_needs_saying_so(
    app_index: Path, host: str, token: str | None, allow_open: bool, refused: bool
) -> None:
    settings = AppSettings(
        index_dir=app_index,
        host=host,
        access_token=SecretStr(token) if token else None,
        allow_open=allow_open,
    )
    problem = open_access_problem(settings)
    assert (problem is not None) is refused
    if refused:
        assert "NODULE_ACCESS_TOKEN" in (problem or "")


def test_nodule_api_refuses_to_start_open_beyond_loopback(app_index: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODULE_")}
    env |= {"NODULE_INDEX_DIR": str(app_index), "NODULE_DEVICE": "cpu"}
    done = subprocess.run(
        [sys.executable, "-m", "app", "--host", "0.0.0.0", "--port", "9"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 2
    assert "NODULE_ACCESS_TOKEN" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_served_document_states_the_deployments_k_limit(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    body = schema["components"]["schemas"]["CoordinateQuery"]["properties"]["k"]
    assert body["maximum"] == 50
    similar = schema["paths"]["/v1/nodules/{nodule_id}/similar"]["get"]["parameters"]
    assert next(p for p in similar if p["name"] == "k")["schema"]["maximum"] == 50


def test_messages_say_what_the_route_takes(client: TestClient, app_index: Path) -> None:
    """Issue 27 item 8: no field the route lacks, no misleading bound, no echo, no numpy repr."""
    npy = io.BytesIO()
    np.save(npy, np.zeros((8, 8, 8), np.int16))
    sr_upload = client.post("/v1/reports/sr/upload", files={"file": ("ct.npy", npy.getvalue())})
    detail = _problem(sr_upload, 415, "zip of the DICOM CT series")["detail"]
    assert "spacing_zyx" not in detail
    query = _a_query(app_index)
    point = query["center_xyz"]
    assert isinstance(point, list)
    center = ",".join(str(v) for v in point)
    zoom = client.get(
        f"/v1/scans/{query['series_uid']}/zoom.png", params={"center_xyz": center, "fov_mm": "nan"}
    )
    assert zoom.status_code == 422
    assert "160" not in zoom.json()["detail"]
    long_uid = "1." + "2" * 5000
    unknown = client.post("/v1/search/coordinate", json={**query, "series_uid": long_uid})
    assert unknown.status_code in (404, 422)
    assert "2" * 200 not in unknown.text


def test_tiny_voxels_get_a_clear_answer_not_a_crash(client: TestClient) -> None:
    """estimate_size on 0.01 mm voxels: the search box would be 10^10 voxels (was a parser
    MemoryError in binary_opening)."""
    hu = np.full((64, 64, 64), -800, dtype=np.int16)
    hu[28:36, 28:36, 28:36] = 40
    buffer = io.BytesIO()
    np.save(buffer, hu)
    answer = client.post(
        "/v1/search/upload",
        files={"file": ("ct.npy", buffer.getvalue())},
        data={"spacing_zyx": "0.01,0.01,0.01", "estimate_size": "true"},
    )
    assert answer.status_code == 422, answer.text
    assert "too small to estimate a size" in answer.json()["detail"]
