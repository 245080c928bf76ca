"""The service's viewer page in headless Chromium, as the viewer's browser tests open it: one
browser per module, a fresh context per test, the page loaded (``body[data-ready]``) with what
went wrong in it recorded."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from tests.helpers.live_server import chromium_path, get_json


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, for a module's tests."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Viewer:
    """A loaded viewer page, and what went wrong in it: uncaught errors, console errors, and
    requests that failed for another host than the service's (the page fetches nothing from
    elsewhere)."""

    page: Page
    server: str
    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def scan(self) -> dict[str, Any]:
        """The scan shown now, as the API describes it."""
        uid = self.page.input_value("[data-testid=scan-select]")
        shown: dict[str, Any] = get_json(f"{self.server}/v1/scans/{uid}")
        return shown

    def outside(self) -> list[str]:
        """Failed requests to anywhere but the service."""
        return [url for url in self.failed if not url.startswith(self.server)]


@contextmanager
def open_viewer(browser: Browser, server: str, width: int, height: int) -> Iterator[Viewer]:
    """The page at ``width`` x ``height`` with its first scan's slice drawn; the test fails
    naming the page's errors when it does not load."""
    context = browser.new_context(
        viewport={"width": width, "height": height}, accept_downloads=True
    )
    page = context.new_page()
    opened = Viewer(page, server)
    page.on("pageerror", lambda error: opened.errors.append(f"pageerror: {error}"))
    page.on("console", lambda message: _console_error(opened.errors, message))
    page.on("requestfailed", lambda request: opened.failed.append(request.url))
    try:
        page.goto(server + "/")
        try:
            page.wait_for_selector("body[data-ready=true]", timeout=30_000)
            page.wait_for_function("document.getElementById('axial').naturalWidth > 0")
        except PlaywrightError as error:
            pytest.fail(f"the page did not load ({error.message.splitlines()[0]}): {opened.errors}")
        yield opened
    finally:
        context.close()


def _console_error(errors: list[str], message: ConsoleMessage) -> None:
    if message.type == "error":
        errors.append(f"console: {message.text}")


def wait_for_slice(page: Page, z: float, window: float | None = None) -> None:
    """Until the axial view shows the slice at ``z`` (to 0.01 mm), in ``window`` when given."""
    page.wait_for_function(
        """a => { const img = document.getElementById('axial');
            return img.dataset.z === a.z && (a.w === null || img.dataset.window === a.w); }""",
        arg={"z": f"{z:.2f}", "w": None if window is None else f"{window:g}"},
        timeout=10_000,
    )


def search(page: Page) -> dict[str, Any]:
    """Run the point search; the request body it sent. Waits for the answer to be drawn."""
    with page.expect_request("**/v1/search/coordinate") as request:
        page.click("[data-testid=search-point]")
    body = request.value.post_data_json
    assert isinstance(body, dict)
    page.wait_for_function(
        "document.querySelector('[data-testid=loading]').hidden"
        " && !document.querySelector('[data-testid=results]').hidden",
        timeout=30_000,
    )
    return body
