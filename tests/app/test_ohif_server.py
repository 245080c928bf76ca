"""The OHIF server (app.ohif): its files and fallback, the proxies' rules, the bundle's checks.

The PACS and the API are one stand-in ASGI app reached through httpx2's ASGI transport, which
records what each forwarded request carried. The real round (Orthanc, the service, Chromium)
is in test_ohif_browser.py.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.ohif import bundle
from app.ohif.config import EXTENSION_URL, PANEL_ID
from app.ohif.proxy import unsafe_path
from app.ohif.server import create_ohif_app, main
from app.ohif.settings import OhifSettings

BASE = "http://127.0.0.1:3000"


class StandIn:
    """The PACS (``/dicom-web``) and the API (``/v1``, ``/static``, ``/``), recording requests."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.app = FastAPI()

        @self.app.api_route("/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "DELETE"])
        async def anything(request: Request, path: str) -> Response:
            body = await request.body()
            self.seen.append(
                {
                    "method": request.method,
                    "path": request.url.path,
                    "query": request.url.query,
                    "headers": dict(request.headers),
                    "body": len(body),
                }
            )
            if path == "v1/needs-token":
                return JSONResponse(
                    {"detail": "missing token"}, 401, headers={"WWW-Authenticate": "Bearer"}
                )
            if path.startswith("dicom-web"):
                return JSONResponse([{"path": path}], headers={"ETag": '"abc"'})
            return PlainTextResponse(f"api {path}", headers={"Set-Cookie": "session=1"})


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    folder = tmp_path / "dist"
    (folder / "assets").mkdir(parents=True)
    (folder / "index.html").write_text("<html>ohif</html>")
    (folder / "app.bundle.0123.js").write_text("console.log('ohif');")
    (folder / "assets" / "logo.svg").write_text("<svg/>")
    return folder


@pytest.fixture
def settings(dist: Path) -> OhifSettings:
    return OhifSettings(
        ohif_dist=dist,
        ohif_api_url="http://api",
        dicomweb_url="http://pacs/dicom-web",
        dicomweb_user="reader",
        dicomweb_password=SecretStr("pacs-secret"),
        ohif_max_body_mb=1,
    )


@pytest.fixture
def stand_in() -> StandIn:
    return StandIn()


@pytest.fixture
def client(settings: OhifSettings, stand_in: StandIn) -> Iterator[TestClient]:
    app = create_ohif_app(settings, transport=httpx2.ASGITransport(app=stand_in.app))
    with TestClient(app, base_url=BASE) as test_client:
        yield test_client


def test_the_viewer_its_routes_and_its_config_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.text == "<html>ohif</html>"
    assert page.headers["cache-control"] == "no-store"
    route = client.get("/viewer", params={"StudyInstanceUIDs": "1.2.3"})
    assert route.status_code == 200
    assert route.text == "<html>ohif</html>"  # the single-page app's fallback
    script = client.get("/app.bundle.0123.js")
    assert script.text == "console.log('ohif');"
    assert "max-age" in script.headers["cache-control"]
    missing = client.get("/no-such-bundle.js")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    config = client.get("/app-config.js")
    assert config.headers["content-type"].startswith("text/javascript")
    assert EXTENSION_URL in config.text
    assert PANEL_ID in config.text
    assert '"qidoRoot": "/dicom-web"' in config.text
    for answer in (page, route, script, config):
        assert "connect-src 'self'" in answer.headers["content-security-policy"]
    panel = client.get(EXTENSION_URL)
    assert panel.status_code == 200
    assert "getPanelModule" in panel.text


def test_dicomweb_reads_carry_the_pacs_credentials_and_nothing_of_the_browser(
    client: TestClient, stand_in: StandIn
) -> None:
    answer = client.get(
        "/dicom-web/studies",
        params={"PatientName": "DOE*", "includefield": "00081030"},
        headers={"Authorization": "Bearer api-token", "Cookie": "session=browser"},
    )
    assert answer.status_code == 200
    assert answer.json() == [{"path": "dicom-web/studies"}]
    assert answer.headers["etag"] == '"abc"'
    [seen] = stand_in.seen
    assert seen["path"] == "/dicom-web/studies"
    assert seen["query"] == "PatientName=DOE%2A&includefield=00081030"
    expected = base64.b64encode(b"reader:pacs-secret").decode()
    assert seen["headers"]["authorization"] == f"Basic {expected}"
    assert "cookie" not in seen["headers"]


def test_writes_to_the_pacs_are_refused(client: TestClient, stand_in: StandIn) -> None:
    for method in ("POST", "PUT", "DELETE"):
        answer = client.request(method, "/dicom-web/studies", content=b"x")
        assert answer.status_code == 405
        assert "POST /v1/reports/sr?store=true" in answer.json()["detail"]
        assert answer.headers["allow"] == "GET, HEAD"
    assert stand_in.seen == []


def test_api_calls_carry_the_browsers_token_and_answers_come_back(
    client: TestClient, stand_in: StandIn
) -> None:
    answer = client.post(
        "/v1/search/coordinate",
        json={"series_uid": "1.2.3"},
        headers={"Authorization": "Bearer api-token", "Origin": BASE},
    )
    assert answer.text == "api v1/search/coordinate"
    assert "set-cookie" not in answer.headers
    seen = stand_in.seen[-1]
    assert seen["headers"]["authorization"] == "Bearer api-token"
    assert "origin" not in seen["headers"]
    assert seen["body"] > 0
    refused = client.get("/v1/needs-token")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert client.get("/static/viewer.js").text == "api static/viewer.js"
    assert client.get("/nodule-search/viewer", params={"compare": "7"}).text == "api "
    assert stand_in.seen[-1]["query"] == "compare=7"


def test_cross_origin_requests_unknown_hosts_and_large_bodies_are_refused(
    client: TestClient, stand_in: StandIn
) -> None:
    other = client.post("/v1/reports/sr", json={}, headers={"Origin": "http://elsewhere.example"})
    assert other.status_code == 403
    host = client.get("/", headers={"Host": "rebound.example"})
    assert host.status_code == 400
    large = client.post("/v1/search/upload", content=b"x" * (2 << 20))
    assert large.status_code == 413
    assert stand_in.seen == []


def test_paths_that_climb_out_of_an_upstream_are_refused(
    client: TestClient, stand_in: StandIn
) -> None:
    assert unsafe_path("studies/../../system")
    assert unsafe_path("studies\\..\\system")
    assert not unsafe_path("studies/1.2.3/series")
    answer = client.get("/dicom-web/studies/%2e%2e/%2e%2e/tools")
    assert answer.status_code in (400, 404)
    assert stand_in.seen == []


def test_an_unreachable_pacs_is_a_502_naming_it(dist: Path) -> None:
    settings = OhifSettings(
        ohif_dist=dist, dicomweb_url="http://127.0.0.1:9/dicom-web", ohif_timeout_s=2
    )
    with TestClient(create_ohif_app(settings), base_url=BASE) as client:
        answer = client.get("/dicom-web/studies")
    assert answer.status_code == 502
    assert answer.json()["detail"] == "the PACS cannot be reached"


def test_the_access_log_names_routes_never_uids(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    uid = "1.2.840.113619.2.55.3.604688119"
    with caplog.at_level(logging.INFO, logger="app.access"):
        client.get(f"/dicom-web/studies/{uid}/series", params={"SeriesInstanceUID": uid})
        client.get("/viewer", params={"StudyInstanceUIDs": uid})
    lines = [r.getMessage() for r in caplog.records if r.name == "app.access"]
    assert any("/dicom-web/{path:path}" in line for line in lines)
    assert not any(uid in line for line in lines)


def test_serve_refuses_without_a_pacs_a_bundle_or_on_an_open_address(
    dist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NODULE_DICOMWEB_URL", raising=False)
    monkeypatch.setenv("NODULE_OHIF_DIST", str(dist))
    assert main(["serve"]) == 2
    assert "NODULE_DICOMWEB_URL" in capsys.readouterr().err
    monkeypatch.setenv("NODULE_DICOMWEB_URL", "http://127.0.0.1:9/dicom-web")
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "--allow-open" in capsys.readouterr().err
    monkeypatch.setenv("NODULE_OHIF_DIST", str(tmp_path / "nowhere"))
    assert main(["serve"]) == 2
    assert "make ohif" in capsys.readouterr().err


# --- the bundle: fetched, checked, unpacked ----------------------------------------------------


def _tarball(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return buffer.getvalue()


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _registry(tmp_path: Path, version: str, data: bytes) -> str:
    folder = tmp_path / "registry" / "@ohif" / "app" / "-"
    folder.mkdir(parents=True)
    (folder / f"app-{version}.tgz").write_bytes(data)
    return (tmp_path / "registry").as_uri()


PACKAGE = {
    "package/README.md": b"readme",
    "package/dist/index.html": b"<html></html>",
    "package/dist/assets/logo.svg": b"<svg/>",
    "package/dist/ort/ort-wasm.wasm": b"\0" * 64,
    "package/dist/dicom-microscopy-viewer/viewer.js": b"x",
    "package/dist/../../escaped.txt": b"out",
}


def test_the_bundle_is_unpacked_without_what_is_not_served(tmp_path: Path) -> None:
    data = _tarball(PACKAGE, links={"package/dist/passwd": "/etc/passwd"})
    pin = bundle.BundlePin("9.9.9", _integrity(data))
    out = tmp_path / "ohif"
    target = bundle.fetch(out, pin, registry=_registry(tmp_path, "9.9.9", data))
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert files == ["assets/logo.svg", "index.html"]
    assert not (tmp_path / "escaped.txt").exists()
    assert [p.name for p in out.iterdir()] == ["9.9.9"]  # no scratch folder left behind
    assert bundle.fetch(out, pin, registry="file:///nowhere") == target  # already there


def test_a_bundle_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    data = _tarball(PACKAGE)
    pin = bundle.BundlePin("9.9.9", _integrity(data + b"tampered"))
    out = tmp_path / "ohif"
    with pytest.raises(bundle.BundleError, match="integrity"):
        bundle.fetch(out, pin, registry=_registry(tmp_path, "9.9.9", data))
    assert not (out / "9.9.9").exists()
    with pytest.raises(bundle.BundleError, match="cannot download"):
        bundle.fetch(out, pin, registry=(tmp_path / "empty").as_uri())


def test_the_pin_is_a_sha512_of_the_released_package() -> None:
    assert bundle.OHIF.integrity.startswith("sha512-")
    assert len(base64.b64decode(bundle.OHIF.integrity.removeprefix("sha512-"))) == 64
    assert bundle.OHIF.tarball_url() == (
        f"https://registry.npmjs.org/@ohif/app/-/app-{bundle.OHIF.version}.tgz"
    )


def test_the_server_imports_no_network_or_index_library() -> None:
    """A static server and two proxies: the network, FAISS and every CT reader stay out of its
    process (its PACS settings come from model.ct.pacs, which imports no DICOM client)."""
    heavy = "{'torch', 'faiss', 'SimpleITK', 'pydicom', 'dicomweb_client', 'highdicom'}"
    code = f"import sys, app.ohif.server; print(sorted({heavy} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
