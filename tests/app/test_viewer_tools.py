"""The viewer's reading tools and issue 26's fixes, in headless Chromium at 1440x900.

One behaviour per test, each on a fresh page of the same live ``nodule-api`` (the small
synthetic catalogue; its first scan is also stored as DICOM): Save as SR without a page error and
only on DICOM series, the scan list's DICOM tag, a point inside a nodule standing for it, the
search button above the fold, markers that leave the nodule's edge visible, orientation letters,
slice keys, a map click opening the nodule's scan, LIDC ratings with their meaning, "why similar"
in a reader's words, the own-patient toggle, the ruler, and the vote's share. Screenshots of the
states a radiologist looks at go to ``$NODULE_TEST_ARTIFACTS/viewer-tools``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route

from tests.helpers.live_server import ROOT, get_json
from tests.helpers.viewer_page import Viewer, chromium, open_viewer, search, wait_for_slice

# Drives Chromium: make test, not test-fast.
pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 1440, 900
#: The viewer's Page Up/Down step, in slices.
PAGE_SLICES = 10
#: The field of view of the comparison's zoomed views (app/static/viewer/compare.js).
COMPARE_FOV_MM = 64.0
#: LIDC scales, value 1 first (what the readers' median ratings mean).
LIDC_MEANINGS: dict[str, list[str]] = {
    "subtlety": [
        "extremely subtle",
        "moderately subtle",
        "fairly subtle",
        "moderately obvious",
        "obvious",
    ],
    "internalStructure": ["soft tissue", "fluid", "fat", "air"],
    "calcification": ["popcorn", "laminated", "solid", "non-central", "central", "absent"],
    "sphericity": ["linear", "ovoid/linear", "ovoid", "ovoid/round", "round"],
    "margin": ["poorly defined", "near poorly defined", "medium margin", "near sharp", "sharp"],
    "lobulation": ["none", "nearly none", "medium", "near marked", "marked"],
    "spiculation": ["none", "nearly none", "medium", "near marked", "marked"],
    "texture": ["non-solid/GGO", "non-solid/mixed", "part solid/mixed", "solid/mixed", "solid"],
    "malignancy": [
        "highly unlikely",
        "moderately unlikely",
        "indeterminate",
        "moderately suspicious",
        "highly suspicious",
    ],
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("NODULE_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    folder = folder / "viewer-tools"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def viewer(server: str, browser: Browser) -> Iterator[Viewer]:
    """The page at 1440x900 with its first scan loaded; uncaught errors are collected."""
    with open_viewer(browser, server, WIDTH, HEIGHT) as opened:
        yield opened


# --- helpers ----------------------------------------------------------------------------


def scan_info(server: str, uid: str) -> dict[str, Any]:
    result: dict[str, Any] = get_json(f"{server}/v1/scans/{uid}")
    return result


def scans(server: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = get_json(f"{server}/v1/scans?limit=1000")["scans"]
    return listed


def slice_z(page: Page) -> float:
    return float(page.get_attribute("#axial", "data-z") or "nan")


def open_scan(page: Page, uid: str) -> None:
    """Choose a scan in the list (unless it is open); wait until its slice at the point is drawn."""
    if page.input_value("[data-testid=scan-select]") != uid:
        page.select_option("[data-testid=scan-select]", uid)
    page.wait_for_function(
        """uid => { const img = document.getElementById('axial');
            return img.dataset.series === uid
                && img.dataset.z === Number(document.getElementById('z').value).toFixed(2); }""",
        arg=uid,
    )


def set_point(page: Page, xyz: tuple[float, float, float] | list[float]) -> None:
    for axis, value in zip("xyz", xyz, strict=True):
        page.fill(f"[data-testid={axis}]", f"{value:.2f}")
    wait_for_slice(page, round(xyz[2], 2))


def save_sr(page: Page) -> dict[str, Any]:
    """Click Save as DICOM SR + SEG; the body of the SR request (the download is awaited)."""
    with page.expect_download(), page.expect_request("**/v1/reports/sr*") as request:
        page.click("[data-testid=save-sr]")
    body = request.value.post_data_json
    assert isinstance(body, dict)
    page.wait_for_function(
        "document.querySelector('[data-testid=sr-notice]').innerText.startsWith('Saved')"
    )
    return body


def dicom_scan(server: str, dicom: bool) -> dict[str, Any]:
    """A scan with indexed nodules stored as DICOM (or not)."""
    for scan in scans(server):
        if bool(scan.get("dicom")) is dicom and scan["n_nodules"]:
            return scan_info(server, scan["series_uid"])
    pytest.fail(f"the synthetic catalogue has no scan with dicom={dicom} (is `dicom` answered?)")


def image_geometry(page: Page) -> dict[str, float]:
    """The axial image on screen: its box, natural size and world mm per image pixel."""
    geometry: dict[str, float] = page.eval_on_selector(
        "#axial",
        """img => { const r = img.getBoundingClientRect();
            return {left: r.left, top: r.top, width: r.width, height: r.height,
                    natural: img.naturalWidth, pixelMm: Number(img.dataset.pixelMm)}; }""",
    )
    return geometry


def mm_to_css_px(geometry: dict[str, float], mm: float) -> float:
    return mm / geometry["pixelMm"] * geometry["width"] / geometry["natural"]


def click_image(page: Page, fx: float, fy: float) -> tuple[float, float]:
    """Click the axial image at fractions of its width and height; the CSS px clicked."""
    g = image_geometry(page)
    x, y = g["left"] + fx * g["width"], g["top"] + fy * g["height"]
    page.mouse.click(x, y)
    return x, y


def draw_ruler(page: Page, long: tuple[float, ...], short: tuple[float, ...]) -> None:
    """Four ruler clicks, as (fx1, fy1, fx2, fy2) fractions of the image for each axis."""
    if page.get_attribute("[data-testid=ruler-toggle]", "aria-pressed") != "true":
        page.click("[data-testid=ruler-toggle]")
    for fx, fy in (long[:2], long[2:], short[:2], short[2:]):
        click_image(page, fx, fy)


def ruler_mm(page: Page, axis: tuple[float, ...]) -> float:
    """The world length of a ruler axis given as image fractions."""
    g = image_geometry(page)
    dx = (axis[2] - axis[0]) * g["natural"] * g["pixelMm"]
    dy = (axis[3] - axis[1]) * g["natural"] * g["pixelMm"]  # square images
    return math.hypot(dx, dy)


def open_first_comparison(page: Page) -> None:
    page.locator("[data-testid=neighbor-card]").first.click()
    page.locator("[data-testid=compare]").wait_for(state="visible")
    page.locator("[data-testid=why-level]").first.wait_for()
    page.wait_for_function(
        "document.getElementById('compare-neighbor-img').dataset.offset === '0.0'"
    )


def route_search_answer(page: Page, change: Callable[[dict[str, Any]], None]) -> None:
    """Answer the coordinate search with the service's own answer, changed by ``change``."""

    def handle(route: Route) -> None:
        response = route.fetch()
        answer = response.json()
        change(answer)
        route.fulfill(response=response, json=answer)

    page.route("**/v1/search/coordinate", handle)


# --- item 4 and 5: Save as DICOM SR + SEG -----------------------------------------------


def test_save_sr_raises_no_page_error(viewer: Viewer) -> None:
    page = viewer.page
    open_scan(page, dicom_scan(viewer.server, True)["series_uid"])
    search(page)
    save_sr(page)
    assert viewer.errors == []
    assert page.inner_text("[data-testid=wl-readout]") == "W 1500 / L -600"  # window untouched


def test_save_shown_for_a_dicom_series(viewer: Viewer) -> None:
    page = viewer.page
    open_scan(page, dicom_scan(viewer.server, True)["series_uid"])
    search(page)
    assert page.locator("[data-testid=save-sr]").is_visible()


def test_save_hidden_for_an_image_file_series(viewer: Viewer, artifacts: Path) -> None:
    page = viewer.page
    open_scan(page, dicom_scan(viewer.server, False)["series_uid"])
    search(page)
    assert page.locator("[data-testid=save-sr]").is_hidden()
    page.screenshot(path=str(artifacts / "save-hidden-image-file.png"))


def test_scan_list_tags_dicom_series(viewer: Viewer) -> None:
    options = viewer.page.eval_on_selector_all(
        "[data-testid=scan-select] option", "os => os.map(o => [o.value, o.textContent])"
    )
    dicom = {s["series_uid"]: bool(s.get("dicom")) for s in scans(viewer.server)}
    assert any(dicom.values())
    assert not all(dicom.values())
    for uid, text in options:
        assert ("DICOM" in text) is dicom[uid], text


def test_scan_format_tag_names_the_open_scan(viewer: Viewer) -> None:
    page = viewer.page
    open_scan(page, dicom_scan(viewer.server, True)["series_uid"])
    assert page.inner_text("[data-testid=scan-format]") == "DICOM"
    open_scan(page, dicom_scan(viewer.server, False)["series_uid"])
    assert page.inner_text("[data-testid=scan-format]") == "image file"


# --- item 6: a point inside a nodule is that nodule -------------------------------------


def _search_off_centre(viewer: Viewer, off_mm: float = 1.8) -> dict[str, Any]:
    """Search 1.8 mm off the first scan's largest nodule's centre (inside its radius)."""
    scan = dicom_scan(viewer.server, True)
    nodule = max(scan["nodules"], key=lambda n: n["diameter_mm"])
    assert nodule["diameter_mm"] / 2 > off_mm
    open_scan(viewer.page, scan["series_uid"])
    x, y, z = nodule["center_xyz"]
    set_point(viewer.page, (x + off_mm, y, z))
    search(viewer.page)
    return dict(nodule)


def test_point_inside_a_nodule_rings_it_as_the_query_on_the_map(viewer: Viewer) -> None:
    nodule = _search_off_centre(viewer)
    ringed = viewer.page.locator("[data-testid=map-point][data-role=query]")
    assert ringed.count() == 1
    assert ringed.get_attribute("data-id") == str(nodule["id"])


def test_point_inside_a_nodule_is_that_nodule_in_the_comparison(
    viewer: Viewer, artifacts: Path
) -> None:
    nodule = _search_off_centre(viewer)
    page = viewer.page
    open_first_comparison(page)
    assert page.inner_text("#compare-query-caption") == f"Query: nodule #{nodule['id']}"
    page.wait_for_function(
        "id => document.querySelector('[data-testid=compare-query-details]').innerText"
        ".startsWith('#' + id + ' ')",
        arg=nodule["id"],
    )
    assert "not a catalogue nodule" not in page.inner_text("[data-testid=compare-query-details]")
    page.screenshot(path=str(artifacts / "compare-point-off-centre.png"))


# --- item 11: the viewer ----------------------------------------------------------------


def test_search_button_above_the_fold(viewer: Viewer, artifacts: Path) -> None:
    page = viewer.page
    page.screenshot(path=str(artifacts / "loaded.png"))
    box = page.locator("[data-testid=search-point]").bounding_box()
    assert box is not None
    assert box["y"] + box["height"] <= HEIGHT


def test_point_marker_leaves_the_nodule_edge_visible(viewer: Viewer, artifacts: Path) -> None:
    page = viewer.page
    scan = viewer.scan
    nodule = scan["nodules"][0]
    wait_for_slice(page, nodule["center_xyz"][2])  # the page opens at the first nodule
    g = image_geometry(page)
    radius_px = mm_to_css_px(g, nodule["diameter_mm"] / 2)
    centre = page.eval_on_selector(
        "#crosshair", "c => { const r = c.getBoundingClientRect(); return [r.left, r.top]; }"
    )
    for axis, (start, screen) in enumerate(zip(("left", "top"), centre, strict=True)):
        offset = (nodule["center_xyz"][axis] - scan["extent_min_xyz"][axis]) / g["pixelMm"] + 0.5
        assert abs(g[start] + mm_to_css_px(g, offset * g["pixelMm"]) - screen) < 1  # on the point
    clearances = page.evaluate(
        """() => {
            const c = document.getElementById('crosshair').getBoundingClientRect();
            return [...document.querySelectorAll('#crosshair .tick')].map(t => {
                const r = t.getBoundingClientRect();
                return Math.max(c.top - r.bottom, r.top - c.top, c.left - r.right, r.left - c.left);
            });
        }"""
    )
    assert len(clearances) == 4
    # Each tick (with its 1 px dark outline) stands outside the nodule's radius.
    assert min(clearances) > radius_px + 1, (clearances, radius_px)
    page.locator("[data-testid=slice-box]").screenshot(path=str(artifacts / "point-marker.png"))


def test_comparison_brackets_stand_outside_the_nodule(viewer: Viewer) -> None:
    page = viewer.page
    search(page)
    open_first_comparison(page)
    neighbour = get_json(
        f"{viewer.server}/v1/nodules/"
        + (page.locator("[data-testid=neighbor-card]").first.get_attribute("data-id") or "")
    )
    view = page.locator("[data-testid=compare-neighbor-img]").bounding_box()
    mark = page.locator("[data-testid=compare-neighbor-mark]").bounding_box()
    assert view is not None
    assert mark is not None
    radius_px = neighbour["diameter_mm"] / 2 / COMPARE_FOV_MM * view["width"]
    # The brackets lie on a square around the centre; its nearest points are the side midpoints.
    assert mark["width"] / 2 > radius_px + 1
    centre = (view["x"] + view["width"] / 2, view["y"] + view["height"] / 2)
    assert abs(mark["x"] + mark["width"] / 2 - centre[0]) < 1
    assert abs(mark["y"] + mark["height"] / 2 - centre[1]) < 1


@pytest.mark.parametrize(
    ("testid", "letter", "side"),
    [
        ("orient-left", "R", "left"),
        ("orient-right", "L", "right"),
        ("orient-top", "A", "top"),
        ("orient-bottom", "P", "bottom"),
    ],
)
def test_orientation_letter(viewer: Viewer, testid: str, letter: str, side: str) -> None:
    page = viewer.page
    g = image_geometry(page)
    box = page.locator(f"[data-testid={testid}]").bounding_box()
    assert box is not None
    assert page.inner_text(f"[data-testid={testid}]") == letter
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    assert g["left"] <= cx <= g["left"] + g["width"]
    assert g["top"] <= cy <= g["top"] + g["height"]
    near = {
        "left": cx - g["left"],
        "right": g["left"] + g["width"] - cx,
        "top": cy - g["top"],
        "bottom": g["top"] + g["height"] - cy,
    }
    assert near[side] < 0.1 * g["width"], near  # at that edge of the image
    assert near[side] == min(near.values())


@pytest.mark.parametrize(
    ("key", "slices"),
    [("ArrowUp", 1), ("ArrowDown", -1), ("PageUp", PAGE_SLICES), ("PageDown", -PAGE_SLICES)],
)
def test_slice_keys(viewer: Viewer, key: str, slices: int) -> None:
    page = viewer.page
    scan = viewer.scan
    low, high = scan["extent_min_xyz"][2], scan["extent_max_xyz"][2]
    step = scan["spacing_xyz"][2]
    start = round((low + high) / 2, 2)
    page.fill("[data-testid=z]", f"{start:.2f}")
    wait_for_slice(page, start)
    page.focus("[data-testid=slice-box]")
    page.keyboard.press(key)
    wait_for_slice(page, min(high, max(low, start + slices * step)))
    assert page.input_value("[data-testid=z]") == f"{slice_z(page):.2f}"  # the point follows


def test_map_click_opens_the_nodule_scan_at_its_slice(viewer: Viewer, artifacts: Path) -> None:
    page = viewer.page
    shown = page.input_value("[data-testid=scan-select]")
    for point in page.locator("[data-testid=map-point]").all():
        nodule = get_json(f"{viewer.server}/v1/nodules/{point.get_attribute('data-id')}")
        if nodule["series_uid"] != shown:
            break
    else:
        pytest.fail("every map point is in the scan shown")
    point.click()
    page.wait_for_function(
        "uid => document.getElementById('scan-select').value === uid", arg=nodule["series_uid"]
    )
    wait_for_slice(page, nodule["center_xyz"][2])
    assert page.input_value("[data-testid=x]") == f"{nodule['center_xyz'][0]:.2f}"
    page.wait_for_function(
        "id => document.querySelector('[data-testid=query-info]').innerText"
        ".includes('indexed nodule #' + id)",
        arg=nodule["id"],
    )
    page.screenshot(path=str(artifacts / "map-click.png"))


def test_lidc_ratings_show_their_meaning(viewer: Viewer, artifacts: Path) -> None:
    page = viewer.page
    search(page)
    open_first_comparison(page)
    neighbour_id = page.locator("[data-testid=neighbor-card]").first.get_attribute("data-id")
    ratings = get_json(f"{viewer.server}/v1/nodules/{neighbour_id}")["characteristics"]
    assert ratings, "the first neighbour has no readers' ratings"
    checked = 0
    for name, value in ratings.items():
        cell = page.locator(f"[data-testid=why-characteristic][data-name={name}] td.neighbor")
        text = cell.inner_text()
        if float(value).is_integer():
            assert f"({LIDC_MEANINGS[name][int(value) - 1]})" in text, (name, value, text)
            checked += 1
        else:
            assert "between" in text, (name, value, text)
    assert checked
    page.locator("[data-testid=why-characteristic]").last.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "compare-lidc-scales.png"))


def test_why_similar_levels_in_a_readers_words(viewer: Viewer) -> None:
    page = viewer.page
    search(page)
    open_first_comparison(page)
    neighbour_id = page.locator("[data-testid=neighbor-card]").first.get_attribute("data-id")
    levels = get_json(f"{viewer.server}/v1/nodules/{neighbour_id}/similar?k=1")["query"]["levels"]
    shown = page.locator("[data-testid=why-level]")
    assert shown.count() == len(levels)
    for i, technical in enumerate(levels):
        assert shown.nth(i).get_attribute("title") == technical  # the technical name: a tooltip
        words = shown.nth(i).inner_text()
        assert not re.search(r"level \d|resolution|bottleneck", words), words
    if len(levels) >= 4 and levels[0].startswith("level 0"):
        assert shown.first.inner_text() == "fine detail: edges and texture"
    # This model's vector reads no size, so the comparison names none.
    assert page.locator("[data-testid=why-size]").count() == 0


def test_why_similar_names_the_blocks_and_the_size_searched_at(viewer: Viewer) -> None:
    """A vector with blocks (issue 29): the blocks in words, the size and where it came from."""
    page = viewer.page
    blocks = ["features", "size", "density", "shape", "learned"]

    def with_blocks(answer: dict[str, Any]) -> None:
        answer["query"]["levels"] = blocks
        answer["query"]["size_for_search"] = {
            "diameter_mm": 8.4,
            "source": "estimated",
            "title": "estimated from the image",
        }
        for neighbor in answer["neighbors"]:
            neighbor["level_similarity"] = [0.9, 0.8, 0.7, 0.6, 0.5]

    route_search_answer(page, with_blocks)
    search(page)
    open_first_comparison(page)
    assert (
        page.inner_text("[data-testid=why-size]") == "searched at 8.4 mm, estimated from the image"
    )
    shown = page.locator("[data-testid=why-level]")
    assert [shown.nth(i).inner_text() for i in range(shown.count())] == [
        "image features (the network's)",
        "size",
        "density, calcium included",
        "shape and margin",
        "learned from readers' ratings",
    ]
    assert [shown.nth(i).get_attribute("title") for i in range(shown.count())] == blocks


# --- new: this patient's other nodules --------------------------------------------------


def test_own_patient_excluded_by_default(viewer: Viewer) -> None:
    page = viewer.page
    assert not page.is_checked("[data-testid=include-own-patient]")
    body = search(page)
    assert body["include_own_patient"] is False
    scope = page.inner_text("[data-testid=patient-scope]")
    assert "Neighbours from this patient excluded" in scope
    assert viewer.scan["patient_id"] in scope


def test_own_patient_included_when_asked(viewer: Viewer) -> None:
    page = viewer.page
    page.check("[data-testid=include-own-patient]")
    body = search(page)
    assert body["include_own_patient"] is True
    assert "Neighbours from this patient included" in page.inner_text("[data-testid=patient-scope]")


def test_own_patient_choice_goes_into_the_sr_request(viewer: Viewer) -> None:
    page = viewer.page
    open_scan(page, dicom_scan(viewer.server, True)["series_uid"])
    page.check("[data-testid=include-own-patient]")
    search(page)
    assert save_sr(page)["include_own_patient"] is True


def test_indexed_nodule_search_leaves_its_patient_out(viewer: Viewer) -> None:
    page = viewer.page
    point = page.locator("[data-testid=map-point]").first
    nodule = get_json(f"{viewer.server}/v1/nodules/{point.get_attribute('data-id')}")
    with page.expect_request("**/v1/nodules/*/similar*") as request:
        point.click()
    assert f"exclude_patient_id={nodule['patient_id']}" in request.value.url
    scope = page.locator("[data-testid=patient-scope]")
    scope.wait_for(state="visible")
    assert "Neighbours from this patient excluded" in scope.inner_text()
    cards = page.locator("[data-testid=neighbor-card]")
    cards.first.wait_for()
    for card in cards.all():
        assert f"patient {nodule['patient_id']}" not in card.inner_text()


# --- new: the ruler ---------------------------------------------------------------------

LONG = (0.30, 0.40, 0.55, 0.48)
SHORT = (0.44, 0.36, 0.41, 0.52)


def test_ruler_draws_both_axes_with_lengths_in_mm(viewer: Viewer, artifacts: Path) -> None:
    page = viewer.page
    draw_ruler(page, LONG, SHORT)
    pixel_mm = image_geometry(page)["pixelMm"]
    for name, axis in (("long", LONG), ("short", SHORT)):
        assert page.locator(f"[data-testid=ruler-{name}]").count() == 1
        label = page.text_content(f"[data-testid=ruler-{name}-label]") or ""
        shown = float(label.removesuffix(" mm"))
        # A click lands on a whole CSS pixel: allow two pixels of the image either way.
        assert abs(shown - ruler_mm(page, axis)) <= 0.05 + 2 * pixel_mm * 1.2, (name, label)
    readout = page.inner_text("[data-testid=ruler-readout]")
    assert "long axis" in readout
    assert "short axis" in readout
    page.locator("[data-testid=slice-box]").screenshot(path=str(artifacts / "ruler.png"))


def test_ruler_clicks_leave_the_point(viewer: Viewer) -> None:
    page = viewer.page
    before = [page.input_value(f"[data-testid={a}]") for a in "xyz"]
    draw_ruler(page, LONG, SHORT)
    assert [page.input_value(f"[data-testid={a}]") for a in "xyz"] == before


def test_ruler_measurement_goes_with_the_search(viewer: Viewer) -> None:
    page = viewer.page
    draw_ruler(page, SHORT, LONG)  # the shorter axis first: swapped before sending
    body = search(page)
    axes = body["measured_axes_mm"]
    assert axes["long_axis_mm"] >= axes["short_axis_mm"] > 0
    assert abs(axes["long_axis_mm"] - ruler_mm(page, LONG)) < 0.5
    shown = float((page.text_content("[data-testid=ruler-long-label]") or "").removesuffix(" mm"))
    assert abs(shown - axes["long_axis_mm"]) <= 0.05 + 1e-9


def test_ruler_measurement_is_shown_apart_from_the_estimate(
    viewer: Viewer, artifacts: Path
) -> None:
    page = viewer.page
    draw_ruler(page, LONG, SHORT)
    body = search(page)
    measured = page.locator("[data-testid=size-measured]")
    measured.wait_for(state="visible")
    text = measured.inner_text()
    assert text.startswith("Measured (ruler)")
    assert f"long {body['measured_axes_mm']['long_axis_mm']:.1f}" in text
    assert "Lung-RADS" in text
    estimate = page.locator("[data-testid=size-estimate]")
    assert re.search(r"Size \(estimate by [a-z ]+\)|No size estimate", estimate.inner_text())
    if "Size (estimate by" in estimate.inner_text():  # the ruler replaces it, and it says so
        assert "replaced by your measurement" in estimate.inner_text()
    page.screenshot(path=str(artifacts / "ruler-result.png"))


def test_ruler_measurement_reaches_the_sr_request(viewer: Viewer) -> None:
    page = viewer.page
    open_scan(page, dicom_scan(viewer.server, True)["series_uid"])
    draw_ruler(page, LONG, SHORT)
    sent = search(page)
    assert save_sr(page)["measured_axes_mm"] == sent["measured_axes_mm"]


def test_clear_ruler(viewer: Viewer) -> None:
    page = viewer.page
    draw_ruler(page, LONG, SHORT)
    page.click("[data-testid=ruler-clear]")
    assert page.locator("[data-testid=ruler-layer] line").count() == 0
    assert "measured_axes_mm" not in search(page)
    assert page.locator("[data-testid=size-measured]").is_hidden()


# --- new: the vote's share --------------------------------------------------------------


def test_vote_reads_malignant_share(viewer: Viewer) -> None:
    page = viewer.page

    def share_only(answer: dict[str, Any]) -> None:
        answer["vote"].pop("malignant_probability", None)
        answer["vote"]["malignant_share"] = 0.25

    route_search_answer(page, share_only)
    search(page)
    text = page.inner_text("[data-testid=vote]")
    if "No labelled neighbour" in text:
        pytest.fail("the search's neighbours have no labels: nothing to vote")
    assert "malignant share: 25%" in text
    assert "probability" not in text.lower()


def test_vote_falls_back_to_malignant_probability(viewer: Viewer) -> None:
    page = viewer.page

    def old_name_only(answer: dict[str, Any]) -> None:
        answer["vote"].pop("malignant_share", None)
        answer["vote"]["malignant_probability"] = 0.75

    route_search_answer(page, old_name_only)
    search(page)
    assert "malignant share: 75%" in page.inner_text("[data-testid=vote]")
