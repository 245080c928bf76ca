"""The viewer page end to end in headless Chromium (Debian's package, driven by Playwright).

``nodule-api`` runs as a real server (uvicorn on loopback) on the small synthetic catalogue; each
test opens a fresh page (1500x1000) and checks one behaviour: the page loads its catalogue and
map; the slice is drawn at >= 512 px; a typed z moves the slice, one outside the scan is named;
a window preset changes the request and the pixels, a Shift-drag adjusts the window; a coordinate
query at a nodule (thumbnails behind a spinner until loaded, with similarity and label; the nodule
is the query; no warning; the size estimate); the comparison of a neighbour (the same window, both
views scrolled in step by the wheel around their own centres, "why similar"); the SR download; a
plain-lung point ("no close match", vote withheld, weak matches); a map click; an ``.npy`` upload
held in flight (spinner, disabled buttons, the old result dimmed) and its result; a broken file
(its message replaces the result) and the next search replacing the error. No test leaves a
request to another host. A screenshot of every state goes to ``$NODULE_TEST_ARTIFACTS`` (default
``test-artifacts/``) ``/viewer``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import Browser, Page, Route

from model.ct.open import load_volume
from model.preprocessing import PatchSpec, patch_hu
from tests.helpers.live_server import ROOT, get_json
from tests.helpers.viewer_page import Viewer, chromium, open_viewer, wait_for_slice

# Drives Chromium: make test, not test-fast.
pytestmark = pytest.mark.slow

K = 4
WIDTH, HEIGHT = 1500, 1000


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("NODULE_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "viewer"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _nodule_npy(synth_set: Path, tmp_path: Path) -> Path:
    """A 48 mm cube of HU around the first annotated nodule, as an uploaded .npy (1 mm voxels)."""
    row = _rows(synth_set / "annotations.csv")[0]
    center = _xyz(row)
    mhd = next(synth_set.glob(f"subset*/{row['seriesuid']}.mhd"))
    spec = PatchSpec(patch_shape_zyx=(48, 48, 48), spacing_mm=1.0, hu_window=(-1024.0, 3000.0))
    hu = patch_hu(load_volume(mhd), center, spec)
    path = tmp_path / "nodule.npy"
    buffer = io.BytesIO()
    np.save(buffer, hu.astype(np.int16))
    path.write_bytes(buffer.getvalue())
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _xyz(row: dict[str, str]) -> tuple[float, float, float]:
    return (float(row["coordX"]), float(row["coordY"]), float(row["coordZ"]))


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def _plain_lung_point(server: str, synth_set: Path) -> tuple[str, tuple[float, float, float]]:
    """A class-0 candidate in lung parenchyma (below -700 HU, 5 mm from every reader's mark)
    that the service finds no close match for."""
    marks: dict[str, list[tuple[float, float, float]]] = {}
    for name in ("annotations.csv", "annotations_excluded.csv"):
        for r in _rows(synth_set / name):
            marks.setdefault(r["seriesuid"], []).append(_xyz(r))
    spec = PatchSpec(patch_shape_zyx=(3, 3, 3), spacing_mm=1.0, hu_window=(-1100.0, 3000.0))
    volumes: dict[str, Any] = {}
    for r in _rows(synth_set / "candidates_V2.csv"):
        uid, xyz = r["seriesuid"], _xyz(r)
        if r["class"] != "0" or any(math.dist(xyz, m) < 5.0 for m in marks.get(uid, [])):
            continue
        if uid not in volumes:
            volumes[uid] = load_volume(next(synth_set.glob(f"subset*/{uid}.mhd")))
        if float(patch_hu(volumes[uid], xyz, spec).mean()) > -700.0:
            continue  # a vessel, a blob, the chest wall: not plain parenchyma
        body = {"series_uid": uid, "center_xyz": list(xyz), "k": K}
        if _post(f"{server}/v1/search/coordinate", body)["query"]["close_match"] is False:
            return uid, xyz
    pytest.fail("the service found a close match for every plain-lung candidate")


def _mean_pixel(page: Page, selector: str) -> float:
    """Mean grey of an image as the browser decoded it."""
    value = page.eval_on_selector(
        selector,
        """img => {
            const c = document.createElement("canvas");
            c.width = img.naturalWidth; c.height = img.naturalHeight;
            const g = c.getContext("2d");
            g.drawImage(img, 0, 0);
            const d = g.getImageData(0, 0, c.width, c.height).data;
            let s = 0;
            for (let i = 0; i < d.length; i += 4) s += d[i];
            return s / (d.length / 4);
        }""",
    )
    return float(value)


def _offsets_shown(page: Page) -> list[str | None]:
    return [
        page.get_attribute(f"[data-testid=compare-{which}-img]", "data-offset")
        for which in ("query", "neighbor")
    ]


def _zoom_z(url: str) -> tuple[str, float]:
    """The series and the world z of a zoom.png request."""
    uid = urllib.parse.unquote(url.split("/v1/scans/")[1].split("/zoom.png")[0])
    center = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["center_xyz"][0]
    return uid, float(center.split(",")[2])


def _compare(
    page: Page,
    server: str,
    query_uid: str,
    query_center: list[float],
    artifacts: Path,
) -> None:
    """Open the second neighbour side by side, scroll both by the wheel, change the window."""
    zooms: list[str] = []
    page.on("request", lambda r: zooms.append(r.url) if "/zoom.png" in r.url else None)
    card = page.locator("[data-testid=neighbor-card]").nth(1)
    neighbor = get_json(f"{server}/v1/nodules/{card.get_attribute('data-id')}")
    card.click()
    page.locator("[data-testid=compare]").wait_for(state="visible")
    shown = "w => document.getElementById('compare-' + w + '-img').dataset.offset === '0.0'"
    for which in ("query", "neighbor"):
        page.wait_for_function(shown, arg=which)
    assert page.eval_on_selector("[data-testid=compare-neighbor-img]", "i => i.naturalWidth") == 256
    assert "readers' malignancy" in page.inner_text("[data-testid=compare-neighbor-details]")
    levels = get_json(f"{server}/v1/nodules/{neighbor['id']}/similar?k=1")["query"]["levels"]
    assert page.locator("[data-testid=why-level]").count() == len(levels)
    step = max(
        get_json(f"{server}/v1/scans/{u}")["spacing_xyz"][2]
        for u in (query_uid, neighbor["series_uid"])
    )
    box = page.locator("[data-testid=compare-neighbor-img]").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, 100)
    page.mouse.wheel(0, 100)
    moved = f"{2 * step:.1f}"
    page.wait_for_function(
        "o => ['query', 'neighbor'].every(w => "
        "document.getElementById('compare-' + w + '-img').dataset.offset === o)",
        arg=moved,
    )
    assert _offsets_shown(page) == [moved, moved]
    assert f"+{2 * step:.1f} mm" in page.inner_text("[data-testid=compare-offset]")
    # Each view was asked for at its own centre plus the same offset (the query's centre is the
    # point as the form holds it, to 0.01 mm).
    asked = [_zoom_z(u) for u in zooms]
    for series, center_z in (
        (query_uid, query_center[2]),
        (neighbor["series_uid"], neighbor["center_xyz"][2]),
    ):
        assert any(u == series and abs(z - (center_z + 2 * step)) < 0.006 for u, z in asked), (
            f"{series} {center_z} {step} {asked}"
        )
    page.click("[data-testid=compare-wl-mediastinum]")
    page.wait_for_function(
        "['query', 'neighbor'].every(w => "
        "document.getElementById('compare-' + w + '-img').dataset.window === '350')"
    )
    page.screenshot(path=str(artifacts / "3b-compare.png"), full_page=True)
    page.keyboard.press("Escape")
    page.locator("[data-testid=compare]").wait_for(state="hidden")
    page.click("[data-testid=wl-lung]")


def _save_sr(page: Page, server: str, uid: str, tmp_path: Path) -> None:
    """The query saved as DICOM: the SR downloads, a DICOM file (the synthetic set's first scan
    is also stored as a DICOM series, so the service can write the SR)."""
    with page.expect_download() as download:
        page.click("[data-testid=save-sr]")
    path = tmp_path / "saved-sr.dcm"
    download.value.save_as(path)
    saved = path.read_bytes()
    assert saved[128:132] == b"DICM"
    assert uid.encode() in saved  # it references the queried series
    page.wait_for_function(
        "document.querySelector('[data-testid=sr-notice]').innerText.startsWith('Saved')"
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def viewer(server: str, browser: Browser) -> Iterator[Viewer]:
    """A fresh page with its first scan open at its first indexed nodule."""
    with open_viewer(browser, server, WIDTH, HEIGHT) as opened:
        yield opened


@pytest.fixture
def searched(viewer: Viewer) -> Viewer:
    """The page after a coordinate query (k = K) at the first indexed nodule of the first scan,
    its thumbnails loaded."""
    page = viewer.page
    page.fill("#k", str(K))
    page.click("[data-testid=search-point]")
    page.locator("[data-testid=neighbor-card]").nth(K - 1).wait_for(timeout=30_000)
    page.wait_for_function("document.querySelectorAll('#neighbors .thumb.loading').length === 0")
    return viewer


@pytest.fixture(scope="module")
def plain_lung_point(server: str, synth_set: Path) -> tuple[str, tuple[float, float, float]]:
    return _plain_lung_point(server, synth_set)


def _upload(page: Page, path: Path) -> None:
    """Send a file from the upload form (1 mm voxels, k = K)."""
    page.click("button[data-tab=upload]")
    page.set_input_files("[data-testid=upload-file]", str(path))
    page.fill("[data-testid=upload-spacing]", "1,1,1")
    page.fill("#upload-k", str(K))
    page.click("[data-testid=search-upload]")


def _broken_upload(page: Page, tmp_path: Path) -> None:
    bad = tmp_path / "broken.npy"
    bad.write_bytes(b"this is not a numpy file")
    _upload(page, bad)
    page.locator("[data-testid=error]").wait_for(state="visible", timeout=30_000)


# --- loading -----------------------------------------------------------------------------


def test_page_loads_the_catalogue_and_its_map(viewer: Viewer, artifacts: Path) -> None:
    page = viewer.page
    assert page.locator("[data-testid=map-point]").count() > 0
    assert "match threshold" in page.inner_text("[data-testid=index-info]")
    page.screenshot(path=str(artifacts / "1-loaded.png"), full_page=True)
    assert viewer.outside() == []  # nothing requested from elsewhere


def test_slice_is_at_least_512_px_and_never_enlarged(viewer: Viewer) -> None:
    natural = viewer.page.eval_on_selector("#axial", "img => [img.naturalWidth, img.clientWidth]")
    assert natural[0] >= 512
    assert natural[1] <= natural[0]
    assert viewer.outside() == []


#: What the page needs: its own files, images it made (blob:, data:), no inline script or style.
STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def test_page_runs_under_a_strict_content_security_policy(server: str, browser: Browser) -> None:
    """Module scripts from this origin, the DOM built without markup and styled through the
    CSSOM: nothing the page does needs 'unsafe-inline' (the service sends no CSP of its own)."""
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    try:
        page = context.new_page()

        def strict(route: Route) -> None:
            response = route.fetch()
            route.fulfill(
                response=response,
                headers={**response.headers, "content-security-policy": STRICT_CSP},
            )

        page.route(f"{server}/", strict)
        refused: list[str] = []
        page.on(
            "console",
            lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
        )
        page.goto(server + "/")
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        page.fill("#k", str(K))
        page.click("[data-testid=search-point]")
        page.locator("[data-testid=neighbor-card]").nth(K - 1).wait_for(timeout=30_000)
        # (no wait_for_function: Playwright evaluates its string, which the policy refuses)
        page.wait_for_selector("#neighbors .thumb.loading", state="detached")
        page.locator("[data-testid=neighbor-card]").first.click()
        page.locator("[data-testid=why-level]").first.wait_for()
        widths = page.eval_on_selector_all(
            "#why-similar .bar > div, #vote .bar > div", "bars => bars.map(b => b.style.width)"
        )
        assert widths
        assert all(w.endswith("%") for w in widths)  # set, and not refused
        assert refused == []
    finally:
        context.close()


# --- the point -----------------------------------------------------------------------------


def _typed_z(viewer: Viewer) -> float:
    """A z 30% up the open scan, typed into the form; waits for its slice."""
    scan = viewer.scan
    low, high = float(scan["extent_min_xyz"][2]), float(scan["extent_max_xyz"][2])
    typed = round(low + 0.3 * (high - low), 2)
    viewer.page.fill("[data-testid=z]", f"{typed:.2f}")
    wait_for_slice(viewer.page, typed)
    return typed


def test_typed_z_moves_the_slice(viewer: Viewer) -> None:
    page = viewer.page
    before = page.get_attribute("#axial", "src")
    typed = _typed_z(viewer)
    assert page.get_attribute("#axial", "src") != before
    assert f"z {typed:.2f} mm" in page.inner_text("[data-testid=slice-label]")
    assert viewer.outside() == []


def test_typed_z_outside_the_scan_is_named(viewer: Viewer) -> None:
    page = viewer.page
    scan = viewer.scan
    typed = _typed_z(viewer)
    page.fill("[data-testid=z]", f"{scan['extent_max_xyz'][2] + 40:.2f}")
    notice = page.locator("[data-testid=slice-notice]")
    notice.wait_for(state="visible")
    assert "outside this scan" in notice.inner_text()
    assert page.get_attribute("#axial", "data-z") == f"{typed:.2f}"  # the slice stayed
    page.click("#scan-nodules button")  # back to the first indexed nodule
    wait_for_slice(page, scan["nodules"][0]["center_xyz"][2])
    assert notice.is_hidden()
    assert viewer.outside() == []


# --- window / level ------------------------------------------------------------------------


def test_window_preset_changes_the_request_and_the_pixels(viewer: Viewer, artifacts: Path) -> None:
    page = viewer.page
    axial_requests: list[str] = []
    page.on("request", lambda r: axial_requests.append(r.url) if "/axial.png" in r.url else None)
    nodule_z = viewer.scan["nodules"][0]["center_xyz"][2]
    wait_for_slice(page, nodule_z, 1500)
    lung_mean = _mean_pixel(page, "#axial")
    page.click("[data-testid=wl-mediastinum]")
    wait_for_slice(page, nodule_z, 350)
    assert any("window=350&level=50" in u for u in axial_requests)
    assert _mean_pixel(page, "#axial") < lung_mean - 10  # lung is black in this window
    assert page.inner_text("[data-testid=wl-readout]") == "W 350 / L 50"
    page.screenshot(path=str(artifacts / "2-mediastinal-window.png"), full_page=True)
    assert viewer.outside() == []


def test_shift_drag_adjusts_the_window(viewer: Viewer) -> None:
    page = viewer.page
    nodule_z = viewer.scan["nodules"][0]["center_xyz"][2]
    page.click("[data-testid=wl-mediastinum]")
    wait_for_slice(page, nodule_z, 350)
    box = page.locator("#axial").bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.keyboard.down("Shift")
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y + 30, steps=6)
    page.mouse.up()
    page.keyboard.up("Shift")
    page.wait_for_function(
        "document.getElementById('axial').dataset.window === String(350 + 60 * 4)"
    )
    assert page.inner_text("[data-testid=wl-readout]") == "W 590 / L 110"
    assert page.locator("button.wl.active").count() == 0  # no preset any more
    assert page.input_value("[data-testid=z]") == f"{nodule_z:.2f}"  # the point stayed
    page.click("[data-testid=wl-lung]")  # a preset takes over again
    wait_for_slice(page, nodule_z, 1500)
    assert viewer.outside() == []


# --- a coordinate query at a nodule --------------------------------------------------------


def test_thumbnails_show_a_spinner_until_loaded(viewer: Viewer) -> None:
    page = viewer.page
    thumbs: list[Route] = []
    page.route("**/v1/nodules/*/preview.png*", lambda route: thumbs.append(route))
    page.fill("#k", str(K))
    page.click("[data-testid=search-point]")
    cards = page.locator("[data-testid=neighbor-card]")
    cards.nth(K - 1).wait_for(timeout=30_000)
    assert cards.count() == K
    assert page.locator("#neighbors .thumb.loading").count() == K
    spinner = page.eval_on_selector(
        "#neighbors .thumb.loading", "e => getComputedStyle(e, '::after').animationName"
    )
    assert spinner == "spin"
    # The glob names the query string too (every thumbnail URL has its window in it): without it
    # nothing was held, and the check above passed only by timing.
    assert len(thumbs) == K
    for route in thumbs:
        route.continue_()
    page.unroute("**/v1/nodules/*/preview.png*")
    page.wait_for_function("document.querySelectorAll('#neighbors .thumb.loading').length === 0")
    assert page.eval_on_selector_all(
        "#neighbors .thumb img", "imgs => imgs.every(i => i.naturalWidth === 384)"
    )
    assert viewer.outside() == []


def test_thumbnails_carry_similarity_and_label(searched: Viewer, artifacts: Path) -> None:
    page = searched.page
    captions = page.locator("[data-testid=thumb-caption]")
    assert captions.count() == K
    assert captions.first.inner_text().startswith("#")
    for i in range(K):
        text = captions.nth(i).inner_text()
        assert re.search(r"sim \d\.\d{3}", text), text
        assert re.search(r"benign|malignant|no label", text), text
    page.screenshot(path=str(artifacts / "3-coordinate-query.png"), full_page=True)
    assert searched.outside() == []


def test_point_on_an_indexed_nodule_is_the_query(searched: Viewer) -> None:
    page = searched.page
    query_id = searched.scan["nodules"][0]["id"]
    info = page.inner_text("[data-testid=query-info]")
    assert f"indexed nodule #{query_id}" in info
    cards = page.locator("[data-testid=neighbor-card]")
    assert str(query_id) not in [c.get_attribute("data-id") for c in cards.all()]  # never its own
    assert "series" in info
    assert re.search(r"best similarity \d\.\d{3}", info), info
    assert page.locator("[data-testid=vote]").inner_text().strip() not in ("", "—")
    assert searched.outside() == []


def test_close_match_shows_no_notice(searched: Viewer) -> None:
    page = searched.page
    assert page.locator("[data-testid=match-notice]").is_hidden()
    assert page.locator("[data-testid=vote-withheld]").count() == 0
    assert searched.outside() == []


def test_size_estimate_names_its_method(searched: Viewer) -> None:
    size = searched.page.locator("[data-testid=size-estimate]")
    assert size.is_visible()
    # It names its method (the test model has no mask branch: region growing).
    found = re.search(r"Size \(estimate by ([a-z ]+)\)|No size estimate", size.inner_text())
    assert found, size.inner_text()
    if found.group(1):
        assert found.group(1) == "region growing"
        assert "not a diagnosis" in size.inner_text()
    assert searched.outside() == []


def test_comparison_scrolls_both_views_in_step(searched: Viewer, artifacts: Path) -> None:
    scan = searched.scan
    _compare(
        searched.page,
        searched.server,
        scan["series_uid"],
        scan["nodules"][0]["center_xyz"],
        artifacts,
    )
    assert searched.outside() == []


def test_save_sr_downloads_a_dicom_file(searched: Viewer, tmp_path: Path) -> None:
    _save_sr(searched.page, searched.server, searched.scan["series_uid"], tmp_path)
    assert searched.outside() == []


# --- no close match ------------------------------------------------------------------------


def test_plain_lung_point_has_no_close_match(
    viewer: Viewer, plain_lung_point: tuple[str, tuple[float, float, float]], artifacts: Path
) -> None:
    page = viewer.page
    lung_uid, lung_xyz = plain_lung_point
    page.select_option("[data-testid=scan-select]", lung_uid)
    page.wait_for_function(
        "uid => document.getElementById('scan-select').value === uid", arg=lung_uid
    )
    page.wait_for_function("() => document.getElementById('axial').dataset.z !== undefined")
    for axis, value in zip("xyz", lung_xyz, strict=True):
        page.fill(f"[data-testid={axis}]", f"{value:.2f}")
    wait_for_slice(page, round(lung_xyz[2], 2))  # the image is where the point is
    page.fill("#k", str(K))
    page.click("[data-testid=search-point]")
    match = page.locator("[data-testid=match-notice]")
    match.wait_for(state="visible", timeout=30_000)
    assert "No close match in the catalogue" in match.inner_text()
    assert "threshold" in match.inner_text()
    assert page.locator("[data-testid=vote-withheld]").is_visible()
    assert "withheld" in (page.get_attribute("[data-testid=vote]", "class") or "")
    page.wait_for_function("document.querySelectorAll('#neighbors .thumb.loading').length === 0")
    # Every neighbour is below the threshold: each is tagged a weak match.
    assert page.locator("[data-testid=weak-match]").count() == K
    page.screenshot(path=str(artifacts / "4-no-close-match.png"), full_page=True)
    assert viewer.outside() == []


# --- the map -------------------------------------------------------------------------------


def test_map_click_opens_the_nodule_as_the_next_query(searched: Viewer, artifacts: Path) -> None:
    page = searched.page
    before_info = page.inner_text("[data-testid=query-info]")
    point = page.locator("[data-testid=map-point]:not([data-role=query])").last
    nodule_id = point.get_attribute("data-id")
    point.click()
    page.wait_for_function(
        "id => document.querySelector('[data-testid=query-info]').innerText"
        ".includes('indexed nodule #' + id)",
        arg=nodule_id,
    )
    assert page.inner_text("[data-testid=query-info]") != before_info
    assert page.locator("[data-testid=neighbor-card]").count() == K
    page.screenshot(path=str(artifacts / "5-map-click.png"), full_page=True)
    assert searched.outside() == []


# --- uploads -------------------------------------------------------------------------------


def test_upload_in_flight_dims_the_previous_result(
    searched: Viewer, synth_set: Path, tmp_path: Path, artifacts: Path
) -> None:
    page = searched.page
    held: list[Route] = []
    page.route("**/v1/search/upload", lambda route: held.append(route))
    _upload(page, _nodule_npy(synth_set, tmp_path))
    page.locator("[data-testid=loading]").wait_for(state="visible")
    deadline = time.monotonic() + 30
    while not held:  # wait_for_timeout lets Playwright deliver the route to the handler
        assert time.monotonic() < deadline, "the upload request never left the page"
        page.wait_for_timeout(50)
    assert page.locator("[data-testid=search-upload]").is_disabled()
    assert page.locator("[data-testid=search-point]").is_disabled()
    assert "Uploading nodule.npy" in page.inner_text("[data-testid=loading]")
    assert "stale" in (page.get_attribute("[data-testid=results]", "class") or "")
    opacity = page.eval_on_selector(
        "[data-testid=results]", "e => Number(getComputedStyle(e).opacity)"
    )
    assert opacity < 0.5
    page.screenshot(path=str(artifacts / "6-upload-in-flight.png"), full_page=True)
    held[0].continue_()
    page.wait_for_function(
        "document.querySelector('[data-testid=query-info]').innerText.includes('uploaded volume')",
        timeout=60_000,
    )
    page.unroute("**/v1/search/upload")
    assert page.locator("[data-testid=loading]").is_hidden()
    assert searched.outside() == []


def test_upload_shows_its_result(
    searched: Viewer, synth_set: Path, tmp_path: Path, artifacts: Path
) -> None:
    page = searched.page
    _upload(page, _nodule_npy(synth_set, tmp_path))
    page.wait_for_function(
        "document.querySelector('[data-testid=query-info]').innerText.includes('uploaded volume')",
        timeout=60_000,
    )
    assert page.locator("[data-testid=loading]").is_hidden()
    assert page.locator("[data-testid=search-upload]").is_enabled()
    assert "stale" not in (page.get_attribute("[data-testid=results]", "class") or "")
    assert page.locator("[data-testid=neighbor-card]").count() == K
    assert page.locator("#query-preview").is_visible()
    assert page.locator("[data-testid=error]").is_hidden()
    page.screenshot(path=str(artifacts / "7-upload.png"), full_page=True)
    assert searched.outside() == []


def test_broken_upload_replaces_the_result(
    searched: Viewer, tmp_path: Path, artifacts: Path
) -> None:
    page = searched.page
    _broken_upload(page, tmp_path)
    text = page.inner_text("[data-testid=error]")
    assert text.startswith("422: ")
    assert "numpy file" in text
    assert page.locator("[data-testid=results]").is_hidden()
    assert page.locator("[data-testid=neighbor-card]").count() == 0
    assert page.locator("[data-testid=map-point][stroke='#16a34a']").count() == 0
    page.screenshot(path=str(artifacts / "8-bad-upload.png"), full_page=True)
    assert searched.outside() == []


def test_next_search_replaces_the_error(searched: Viewer, tmp_path: Path) -> None:
    page = searched.page
    _broken_upload(page, tmp_path)
    page.locator("[data-testid=map-point]").first.click()
    page.locator("[data-testid=neighbor-card]").nth(K - 1).wait_for(timeout=30_000)
    assert page.locator("[data-testid=error]").is_hidden()
    assert searched.outside() == []
