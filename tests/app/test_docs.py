"""/docs and /redoc load every script, style and icon from the service itself (no CDN)."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import AppSettings


class _Links(HTMLParser):
    """The URLs a page makes the browser fetch: script src, link href, ReDoc's spec-url."""

    def __init__(self) -> None:
        super().__init__()
        self.assets: list[tuple[str, str]] = []  # (tag, url)
        self.spec_urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value for name, value in attrs if value is not None}
        if tag == "script" and "src" in values:
            self.assets.append((tag, values["src"]))
        elif tag == "link" and "href" in values:
            self.assets.append((values.get("rel", tag), values["href"]))
        elif tag == "redoc" and "spec-url" in values:
            self.spec_urls.append(values["spec-url"])


@pytest.fixture(scope="module")
def docs_client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    # No lifespan: the pages need only the routes, not the model or a catalogue.
    folder = tmp_path_factory.mktemp("docs")
    return TestClient(create_app(AppSettings(index_dir=folder, device="cpu")))


EXPECTED_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
}


@pytest.mark.parametrize(
    ("page", "kinds"),
    [("/docs", {"script", "stylesheet", "shortcut icon"}), ("/redoc", {"script", "shortcut icon"})],
)
def test_docs_pages_use_only_local_files(
    docs_client: TestClient, page: str, kinds: set[str]
) -> None:
    response = docs_client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    # The browser may not fetch images or data from elsewhere (ReDoc asks for the Redocly logo).
    policy = response.headers["content-security-policy"]
    assert "img-src 'self' data:" in policy
    assert "connect-src 'self'" in policy
    html = response.text
    assert "://" not in html  # no absolute URL at all: nothing from another host
    links = _Links()
    links.feed(html)
    assert {kind for kind, _ in links.assets} == kinds
    for kind, url in links.assets:
        assert url.startswith("/docs-assets/"), (kind, url)
        asset = docs_client.get(url)
        assert asset.status_code == 200, url
        content_type = asset.headers["content-type"].split(";")[0]
        assert content_type in EXPECTED_TYPES[Path(url).suffix], (url, content_type)
        assert len(asset.content) > 1000, url  # the real file, not an error page
    if page == "/redoc":
        assert links.spec_urls == ["/openapi.json"]
    else:
        assert "url: '/openapi.json'" in html
        assert '"validatorUrl": null' in html  # no badge fetched from validator.swagger.io
    spec = docs_client.get("/openapi.json")
    assert spec.status_code == 200
    assert "/v1/search/coordinate" in spec.json()["paths"]


def test_swagger_oauth2_redirect_page(docs_client: TestClient) -> None:
    response = docs_client.get("/docs/oauth2-redirect")
    assert response.status_code == 200
    assert "swaggerUIRedirectOauth2" in response.text


def test_docs_pages_are_not_in_the_api_schema(docs_client: TestClient) -> None:
    paths = docs_client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc"))]


def test_every_schema_field_is_described(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    missing = [
        f"{name}.{field}"
        for name, component in schema["components"]["schemas"].items()
        for field, spec in component.get("properties", {}).items()
        if "description" not in spec
    ]
    assert not missing


def test_the_renamed_share_keeps_its_old_name_marked_deprecated(client: TestClient) -> None:
    vote = client.get("/openapi.json").json()["components"]["schemas"]["Vote"]["properties"]
    assert "share" in vote["malignant_share"]["description"]
    assert vote["malignant_probability"]["deprecated"] is True


@pytest.mark.parametrize(
    ("path", "media_type"),
    [("/v1/search/coordinate", "application/json"), ("/v1/reports/sr", "application/dicom")],
)
def test_the_swagger_examples_answer_200(client: TestClient, path: str, media_type: str) -> None:
    """What Swagger's "Try it out" sends as prefilled: a nodule of the served catalogue."""
    operation = client.get("/openapi.json").json()["paths"][path]["post"]
    example = operation["requestBody"]["content"]["application/json"]["example"]
    answer = client.post(path, json=example)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith(media_type)


def test_operation_texts_carry_no_implementation_notes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    texts = [op.get("description", "") for ops in paths.values() for op in ops.values()]
    assert not [t for t in texts if "``def``" in t or "threadpool" in t]
