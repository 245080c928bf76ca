"""The viewer page end to end in headless Chromium (Debian's package, driven by Playwright).

``nodule-api`` runs as a real server (uvicorn on loopback) on the small synthetic catalogue; the
browser loads the page, runs a coordinate query, opens a nodule from the map, uploads an ``.npy``
and a broken file. A screenshot of every state goes to ``$NODULE_TEST_ARTIFACTS`` (default
``test-artifacts/``) as the test's artifact.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import sync_playwright

from model.ct import load_volume
from model.preprocessing import PatchSpec, patch_hu

ROOT = Path(__file__).resolve().parents[2]
K = 4


def _chromium() -> str:
    found = os.environ.get("NODULE_CHROMIUM") or shutil.which("chromium")
    found = found or shutil.which("chromium-browser")
    if not found:
        pytest.fail(
            "Chromium is not installed: `apt-get install chromium` (what .ci/run and `make test` "
            "do), or point NODULE_CHROMIUM at a Chromium binary"
        )
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(
    app_index: Path, synth_set: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "NODULE_INDEX_DIR": str(app_index),
        "NODULE_DATA_DIR": str(synth_set),
        "NODULE_DEVICE": "cpu",
    }
    log = (tmp_path_factory.mktemp("server") / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nodule-api did not start (see {log.name})") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("NODULE_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "viewer"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _nodule_npy(synth_set: Path, tmp_path: Path) -> Path:
    """A 48 mm cube of HU around the first annotated nodule, as an uploaded .npy (1 mm voxels)."""
    import csv

    with (synth_set / "annotations.csv").open() as f:
        row = next(csv.DictReader(f))
    center = tuple(float(row[k]) for k in ("coordX", "coordY", "coordZ"))
    mhd = next(synth_set.glob(f"subset*/{row['seriesuid']}.mhd"))
    spec = PatchSpec(patch_shape_zyx=(48, 48, 48), spacing_mm=1.0, hu_window=(-1024.0, 3000.0))
    hu = patch_hu(load_volume(mhd), center, spec)
    path = tmp_path / "nodule.npy"
    buffer = io.BytesIO()
    np.save(buffer, hu.astype(np.int16))
    path.write_bytes(buffer.getvalue())
    return path


def test_viewer_in_chromium(server: str, synth_set: Path, artifacts: Path, tmp_path: Path) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=_chromium(), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            failed: list[str] = []
            page.on("requestfailed", lambda request: failed.append(request.url))
            page.goto(server + "/")
            page.wait_for_selector("body[data-ready=true]", timeout=30_000)
            page.wait_for_function("document.getElementById('axial').naturalWidth > 0")
            assert page.locator("[data-testid=map-point]").count() > 0
            page.screenshot(path=str(artifacts / "1-loaded.png"), full_page=True)

            # A coordinate query: the first indexed nodule of the first scan is preselected.
            page.fill("#k", str(K))
            page.click("[data-testid=search-point]")
            cards = page.locator("[data-testid=neighbor-card]")
            cards.nth(K - 1).wait_for(timeout=30_000)
            assert cards.count() == K
            assert "similarity 1.000" in cards.first.inner_text()  # the nodule itself
            assert page.locator("[data-testid=vote]").inner_text().strip() not in ("", "—")
            assert "series" in page.inner_text("[data-testid=query-info]")
            page.screenshot(path=str(artifacts / "2-coordinate-query.png"), full_page=True)

            # A click on a map point opens that nodule as the next query.
            before = page.inner_text("[data-testid=query-info]")
            point = page.locator("[data-testid=map-point]").last
            nodule_id = point.get_attribute("data-id")
            point.click()
            page.wait_for_function(
                "id => document.querySelector('[data-testid=query-info]').innerText"
                ".includes('indexed nodule #' + id)",
                arg=nodule_id,
            )
            assert page.inner_text("[data-testid=query-info]") != before
            assert cards.count() == K
            page.screenshot(path=str(artifacts / "3-map-click.png"), full_page=True)

            # An uploaded .npy in HU with its spacing.
            page.click("button[data-tab=upload]")
            page.set_input_files("[data-testid=upload-file]", str(_nodule_npy(synth_set, tmp_path)))
            page.fill("[data-testid=upload-spacing]", "1,1,1")
            page.fill("#upload-k", str(K))
            page.click("[data-testid=search-upload]")
            page.wait_for_function(
                "document.querySelector('[data-testid=query-info]').innerText"
                ".includes('uploaded volume')",
                timeout=60_000,
            )
            assert cards.count() == K
            assert page.locator("#query-preview").is_visible()
            assert page.locator("[data-testid=error]").is_hidden()
            page.screenshot(path=str(artifacts / "4-upload.png"), full_page=True)

            # A broken upload: the API's message is shown, readable.
            bad = tmp_path / "broken.npy"
            bad.write_bytes(b"this is not a numpy file")
            page.set_input_files("[data-testid=upload-file]", str(bad))
            page.click("[data-testid=search-upload]")
            error = page.locator("[data-testid=error]")
            error.wait_for(state="visible", timeout=30_000)
            text = error.inner_text()
            assert text.startswith("422: ")
            assert "numpy file" in text
            page.screenshot(path=str(artifacts / "5-bad-upload.png"), full_page=True)
            assert not [u for u in failed if not u.startswith(server)]  # nothing external
        finally:
            browser.close()
