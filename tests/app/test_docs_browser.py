"""/docs (Swagger UI) and /redoc rendered in headless Chromium with no network but loopback.

The same real ``nodule-api`` (uvicorn on 127.0.0.1) and Debian Chromium as the viewer's end-to-end
test; every request to another host is aborted and recorded, and the test asserts there was none.
A screenshot of each page goes to ``$NODULE_TEST_ARTIFACTS/docs`` (default ``test-artifacts/``).
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Route

from tests.helpers.live_server import ROOT
from tests.helpers.viewer_page import chromium

# Drives Chromium: make test, not test-fast.
pytestmark = pytest.mark.slow

#: Where the live service (the ``server`` fixture: nodule-api over the small synthetic catalogue)
#: answers; every other host is blocked.
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
OPERATION = ("POST", "/v1/search/coordinate")


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("NODULE_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "docs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _loopback_only(page: Page, outside: list[str]) -> None:
    """Abort every request to a host other than loopback, and record it."""

    def handle(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname in LOOPBACK:
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    page.route("**/*", handle)


def _summary(server: str) -> str:
    with urllib.request.urlopen(f"{server}/openapi.json", timeout=10) as response:
        spec = json.load(response)
    method, path = OPERATION
    return str(spec["paths"][path][method.lower()]["summary"])


def test_docs_pages_render_offline(server: str, artifacts: Path) -> None:
    summary = _summary(server)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        outside: list[str] = []
        failed: list[tuple[str, str]] = []
        errors: list[str] = []
        _loopback_only(page, outside)
        page.on(
            "requestfailed", lambda request: failed.append((request.url, request.failure or ""))
        )
        page.on("pageerror", lambda error: errors.append(str(error)))

        page.goto(server + "/docs")
        page.wait_for_selector(".opblock", timeout=30_000)
        operations = page.eval_on_selector_all(
            ".opblock",
            """blocks => blocks.map(b => [
                b.querySelector('.opblock-summary-method').textContent.trim(),
                b.querySelector('.opblock-summary-path').getAttribute('data-path'),
            ])""",
        )
        assert list(OPERATION) in operations
        assert len(operations) >= 10  # the whole API, not one stray block
        page.screenshot(path=str(artifacts / "swagger-ui.png"), full_page=False)

        page.goto(server + "/redoc")
        heading = page.locator("h2", has_text=summary).first
        heading.wait_for(timeout=30_000)
        heading.scroll_into_view_if_needed()
        assert heading.is_visible()
        page.screenshot(path=str(artifacts / "redoc.png"), full_page=False)

        assert outside == []  # nothing reached the network for another host
        # What the pages' CSP stopped in the browser (ReDoc's Redocly logo from its CDN) was
        # never sent; nothing from the service itself failed.
        for url, failure in failed:
            assert urlsplit(url).hostname not in LOOPBACK, (url, failure)
            assert failure == "csp", (url, failure)  # Chromium's blocked reason
        assert errors == []
