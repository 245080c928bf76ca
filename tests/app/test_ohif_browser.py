"""OHIF with the "Similar nodules" panel, end to end: a real Orthanc holding the real LIDC-IDRI-0001
series, a live nodule-api, a live nodule-ohif serving the pinned bundle, Debian's Chromium.

One test per behaviour (issue 30): the panel appears; pick, search, neighbours and vote; save
(the SR and SEG found again by QIDO-RS); the saved SR opens without a console error on the
nodule's slice; the SEG overlays; the service's deep link lands on the right slice; no request
leaves the machine (checked on every page, and on the study list). The first OHIF load takes
15-20 s on 2 busy cores: waits allow a minute.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from app.ohif import bundle
from model.clinical.sr import slice_point
from model.ct.dicom import DicomSeriesSource
from tests.helpers.data import RealSeries
from tests.helpers.live_server import (
    OHIF_RETURNING_USER,
    chromium_path,
    free_port,
    live_api,
    live_process,
)
from tests.helpers.orthanc import Orthanc

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

ROOT = Path(__file__).resolve().parents[2]
LOAD_MS = 60_000
EXTENSION = "/nodule-search/panel/extension.js"


@dataclass
class Stack:
    """The running round: PACS, service, OHIF, and the queried series."""

    pacs: Orthanc
    api: str
    ohif: str
    study_uid: str
    series_uid: str
    folder: Path
    center_xyz: tuple[float, float, float]

    def slice_sop(self, center_xyz: tuple[float, float, float]) -> str:
        """The SOP instance of the axial image through a point (as the SR references it)."""
        found = slice_point(DicomSeriesSource(self.folder), center_xyz)
        assert found is not None
        return found.sop_instance_uid

    def series_of(self, modality: str) -> list[str]:
        """The study's series of one modality, by QIDO-RS."""
        found = self.pacs.client().search_for_series(
            self.study_uid, search_filters={"Modality": modality}
        )
        return [str(s["0020000E"]["Value"][0]) for s in found]


@pytest.fixture(scope="module")
def ohif_dist() -> Path:
    """The pinned bundle (``make ohif`` fetches it before the tests; fetched here otherwise)."""
    try:
        return bundle.fetch(ROOT / "build" / "ohif")
    except bundle.BundleError as e:
        pytest.fail(f"the OHIF bundle is missing and cannot be fetched ({e}): run `make ohif`")


def _nodule_center(shared_data: Path, series_uid: str) -> tuple[float, float, float]:
    with (shared_data / "luna16/annotations.csv").open() as f:
        row = next(r for r in csv.DictReader(f) if r["seriesuid"] == series_uid)
    return (float(row["coordX"]), float(row["coordY"]), float(row["coordZ"]))


@pytest.fixture(scope="module")
def stack(
    ohif_dist: Path,
    seg_index: Path,
    real_series: RealSeries,
    shared_data: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("ohif")
    pacs = Orthanc(work)  # its own PACS: the SRs stored here meet no other test's
    pacs.start()
    try:
        folder = real_series["LIDC-IDRI-0001"]
        study, series = pacs.store(folder)
        ohif_port = free_port()
        ohif = f"http://127.0.0.1:{ohif_port}"
        env = {
            "NODULE_DICOMWEB_URL": pacs.url,
            "NODULE_DICOMWEB_USER": pacs.user,
            "NODULE_DICOMWEB_PASSWORD": pacs.password,
            "NODULE_DEVICE": "cpu",
        }
        # A catalogue whose model has a mask branch: the saved search takes its SEG along.
        api_env = {**env, "NODULE_INDEX_DIR": str(seg_index), "NODULE_OHIF_URL": ohif}
        with live_api(api_env, work / "api.log") as api:
            ohif_env = {**env, "NODULE_OHIF_DIST": str(ohif_dist), "NODULE_OHIF_API_URL": api}
            command = [sys.executable, "-m", "app.ohif", "serve", "--port", str(ohif_port)]
            ready = f"{ohif}/app-config.js"
            with live_process(command, ohif_env, work / "ohif.log", ready, "nodule-ohif"):
                center = _nodule_center(shared_data, series)
                yield Stack(pacs, api, ohif, study, series, folder, center)
    finally:
        pacs.stop()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """Where each state's screenshot goes (looked at when the panel changes)."""
    folder = Path(os.environ.get("NODULE_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "ohif"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


@dataclass
class Watched:
    """A page and what it did: console messages, uncaught errors, every request's URL."""

    page: Page
    console: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def errors(self) -> list[str]:
        """Console errors and what OHIF's error boundary reports (it logs at debug level)."""
        return [
            line
            for line in self.console
            if line.startswith(("error:", "pageerror:"))
            or "Error Boundary" in line
            or "TypeError" in line
        ]

    def foreign(self) -> list[str]:
        """Requests to anywhere but this machine."""
        local = ("http://127.0.0.1:", "data:", "blob:")
        return [url for url in self.requests if not url.startswith(local)]


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.add_init_script(OHIF_RETURNING_USER)
    page = context.new_page()
    found = Watched(page)
    page.on("console", lambda m: found.console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: found.console.append(f"pageerror: {e}"))
    context.on("request", lambda r: found.requests.append(r.url))
    yield found
    context.close()
    assert found.foreign() == [], "requests left the machine"


def _open_study(page: Page, stack: Stack, sop: str | None = None) -> None:
    params = {"StudyInstanceUIDs": stack.study_uid}
    if sop is not None:
        params |= {"SeriesInstanceUIDs": stack.series_uid, "initialSOPInstanceUID": sop}
    page.goto(f"{stack.ohif}/viewer?{urllib.parse.urlencode(params)}")


def _open_panel(page: Page) -> None:
    page.click('[data-cy="similarNodules-btn"]', timeout=LOAD_MS)
    page.wait_for_selector('[data-testid="nodule-search-panel"]', timeout=LOAD_MS)


def _shown_instance(page: Page) -> Any:
    return page.evaluate(f"import('{EXTENSION}').then(m => m.inspect.shownInstance())")


def _wait_for_instance(page: Page, sop: str) -> None:
    deadline = time.monotonic() + LOAD_MS / 1000
    while _shown_instance(page) != sop:
        assert time.monotonic() < deadline, f"OHIF shows {_shown_instance(page)}, not {sop}"
        page.wait_for_timeout(250)


def _settled_client_point(page: Page, world_xyz: tuple[float, float, float]) -> list[float]:
    """Where a world point is on screen once the layout has settled (the side panel opening
    resizes the viewport, and the image is fitted again)."""
    script = f"import('{EXTENSION}').then(m => m.inspect.worldToClient({list(world_xyz)}))"
    deadline = time.monotonic() + LOAD_MS / 1000
    before = page.evaluate(script)
    while True:
        page.wait_for_timeout(400)
        now = page.evaluate(script)
        if now == before or time.monotonic() > deadline:
            return [float(v) for v in now]
        before = now


def _pick_and_search(page: Page, stack: Stack) -> None:
    """Open the nodule's slice, pick the nodule's centre in the viewport, wait for the answer."""
    sop = stack.slice_sop(stack.center_xyz)
    _open_study(page, stack, sop)
    _open_panel(page)
    _wait_for_instance(page, sop)
    where = _settled_client_point(page, stack.center_xyz)
    page.click('[data-testid="ns-pick"]')
    page.mouse.click(where[0], where[1])
    page.wait_for_selector('[data-testid="ns-neighbour"]', timeout=LOAD_MS)


def _post(url: str, body: dict[str, Any]) -> bytes:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as answer:
        return bytes(answer.read())


def test_the_panel_appears(watched: Watched, stack: Stack, artifacts: Path) -> None:
    _open_study(watched.page, stack)
    _open_panel(watched.page)
    panel = watched.page.locator('[data-testid="nodule-search-panel"]')
    assert "Similar nodules" in panel.inner_text()
    assert watched.page.is_enabled('[data-testid="ns-pick"]')
    assert not watched.page.is_visible('[data-testid="ns-vote"]')  # nothing searched yet
    watched.page.screenshot(path=str(artifacts / "1-panel.png"))
    assert watched.errors() == []


def test_pick_search_neighbours_and_vote(watched: Watched, stack: Stack, artifacts: Path) -> None:
    page = watched.page
    _pick_and_search(page, stack)
    picked = page.get_attribute('[data-testid="ns-point"]', "data-center-xyz")
    assert picked is not None
    center = [float(v) for v in picked.split(",")]
    # The picked point is on the nodule (the slice is 2.5 mm thick, pixels 0.7 mm).
    assert all(abs(a - b) < 2.5 for a, b in zip(center, stack.center_xyz, strict=True))
    body = {"series_uid": stack.series_uid, "study_uid": stack.study_uid, "center_xyz": center}
    answer = json.loads(
        _post(f"{stack.api}/v1/search/coordinate", {**body, "k": 5, "estimate_size": True})
    )
    shown = page.locator('[data-testid="ns-neighbour"]')
    ids = [int(shown.nth(i).get_attribute("data-nodule") or -1) for i in range(shown.count())]
    assert ids == [n["id"] for n in answer["neighbors"]]
    vote = page.locator('[data-testid="ns-vote"]')
    withheld = answer["vote"]["withheld"]
    assert vote.get_attribute("data-withheld") == str(withheld).lower()
    if withheld:
        assert "withheld" in vote.inner_text()
        assert "vote malignant" not in vote.inner_text()
        assert "vote benign" not in vote.inner_text()
    size = page.inner_text('[data-testid="ns-size"]')
    assert "estimate" in size
    page.screenshot(path=str(artifacts / "2-search.png"))
    assert watched.errors() == []


def test_save_stores_the_sr_and_the_seg_found_by_qido(
    watched: Watched, stack: Stack, artifacts: Path
) -> None:
    page = watched.page
    before = {m: set(stack.series_of(m)) for m in ("SR", "SEG")}
    _pick_and_search(page, stack)
    page.click('[data-testid="ns-save"]')
    saved = page.wait_for_selector('[data-testid="ns-saved"][data-objects]', timeout=LOAD_MS)
    assert saved is not None
    objects = int(saved.get_attribute("data-objects") or 0)
    new = {m: set(stack.series_of(m)) - before[m] for m in ("SR", "SEG")}
    assert len(new["SR"]) == 1
    assert len(new["SEG"]) == objects - 1  # what the panel says is what the PACS holds
    assert objects == 2, "the model's mask branch finds the nodule: its SEG goes along"
    assert "SR and the SEG" in saved.inner_text()
    page.screenshot(path=str(artifacts / "3-saved.png"))
    assert watched.errors() == []


def _store_sr(stack: Stack) -> str:
    """A search's SR and SEG stored through the API; the SOP instance its point is on."""
    body = {
        "series_uid": stack.series_uid,
        "study_uid": stack.study_uid,
        "center_xyz": list(stack.center_xyz),
        "k": 5,
    }
    _post(f"{stack.api}/v1/reports/sr?store=true&seg=true", body)
    return stack.slice_sop(stack.center_xyz)


def _open_series_item(page: Page, modality: str) -> None:
    """Double-click the study browser's item of the newest series of a modality."""
    page.wait_for_selector('[data-cy="study-browser-thumbnail"]', timeout=LOAD_MS)
    item = page.get_by_text(modality, exact=True).last
    item.wait_for(timeout=LOAD_MS)
    item.dblclick()


def test_the_saved_sr_opens_on_the_nodules_slice_without_an_error(
    watched: Watched, stack: Stack, artifacts: Path
) -> None:
    page = watched.page
    sop = _store_sr(stack)
    _open_study(page, stack)
    _open_series_item(page, "SR")
    _wait_for_instance(page, sop)
    # Its point is drawn: the SR's annotation on the viewport's drawing layer.
    page.wait_for_selector(
        "svg.svg-layer g[data-annotation-uid]", state="attached", timeout=LOAD_MS
    )
    page.wait_for_timeout(1000)  # a late error surfaces
    page.screenshot(path=str(artifacts / "4-sr.png"))
    assert watched.errors() == []


def test_the_seg_overlays(watched: Watched, stack: Stack, artifacts: Path) -> None:
    page = watched.page
    _store_sr(stack)
    _open_study(page, stack)
    page.wait_for_selector('[data-cy="study-browser-thumbnail"]', timeout=LOAD_MS)
    _open_series_item(page, "SEG")
    # OHIF shows the SEG over its CT and asks whether to load it as a segmentation.
    page.get_by_role("button", name="Yes").click(timeout=LOAD_MS)
    deadline = time.monotonic() + LOAD_MS / 1000
    count = 0
    while count == 0 and time.monotonic() < deadline:
        page.wait_for_timeout(500)
        count = page.evaluate(f"import('{EXTENSION}').then(m => m.inspect.segmentationCount())")
    assert count >= 1
    page.screenshot(path=str(artifacts / "5-seg.png"))
    assert watched.errors() == []


def test_the_deep_link_lands_on_the_slice(watched: Watched, stack: Stack, artifacts: Path) -> None:
    page = watched.page
    center = ",".join(str(v) for v in stack.center_xyz)
    url = f"{stack.api}/v1/scans/{stack.series_uid}/ohif?center_xyz={center}"
    with urllib.request.urlopen(url, timeout=60) as answer:
        link = json.loads(answer.read())
    assert link["sop_instance_uid"] == stack.slice_sop(stack.center_xyz)
    # The service's viewer offers the same link at that point (here through the OHIF server).
    params = urllib.parse.urlencode(
        {"series_uid": stack.series_uid, "study_uid": stack.study_uid, "center_xyz": center}
    )
    page.goto(f"{stack.ohif}/nodule-search/viewer?{params}")
    page.wait_for_selector("body[data-ready=true]", timeout=LOAD_MS)
    shown = page.wait_for_selector('[data-testid="ohif-link"]:not([hidden])', timeout=LOAD_MS)
    assert shown is not None
    assert shown.get_attribute("href") == link["url"]
    page.goto(link["url"])
    _wait_for_instance(page, link["sop_instance_uid"])
    page.screenshot(path=str(artifacts / "6-deep-link.png"))
    assert watched.errors() == []


def test_no_request_leaves_the_machine(watched: Watched, stack: Stack) -> None:
    """The study list, then a study: every request goes to this machine (the fixture checks)."""
    page = watched.page
    page.goto(stack.ohif)
    page.wait_for_load_state("networkidle", timeout=LOAD_MS)
    _open_study(page, stack)
    _open_panel(page)
    page.wait_for_load_state("networkidle", timeout=LOAD_MS)
    assert any(url.startswith(f"{stack.ohif}/dicom-web/") for url in watched.requests)
    assert watched.foreign() == []


def test_the_panels_words_never_say_more_than_the_answer(watched: Watched, stack: Stack) -> None:
    """The pure modules, run in the browser: a withheld vote names no verdict, a size is always
    an estimate, a multipart answer's parts are counted, the comparison link is the viewer's."""
    page = watched.page
    page.goto(f"{stack.ohif}/app-config.js")
    checked = page.evaluate(
        """async () => {
          const words = await import('/nodule-search/panel/words.js');
          const api = await import('/nodule-search/panel/api.js');
          const withheld = words.voteWords({
            vote: {withheld: true, binary: 1, malignant_share: 0.9, n_labelled: 4},
            query: {best_similarity: 0.71, match_threshold: 0.8}});
          const voted = words.voteWords({
            vote: {withheld: false, binary: 0, malignant_share: 0.2, n_labelled: 5},
            query: {best_similarity: 0.9, match_threshold: 0.8}});
          const size = words.sizeWords({size_estimate: {estimated_by: 'network mask',
            mean_diameter_mm: 8.44, long_axis_mm: 9.1, short_axis_mm: 7.8,
            nodule_type: 'solid', lung_rads: '4A'}});
          const none = words.sizeWords({size_estimate: null});
          const body = new TextEncoder().encode('--b1\\r\\nx\\r\\n--b1\\r\\ny\\r\\n--b1--\\r\\n');
          const type = 'multipart/related; type="application/dicom"; boundary=b1';
          const parts = api.multipartCount(type, body);
          const link = api.compareUrl('/nodule-search/viewer',
            {series_uid: '1.2', study_uid: '3.4', center_xyz: [1, 2.345, -3], k: 5}, 7);
          return {withheld, voted, size, none, parts, link};
        }"""
    )
    assert checked["withheld"]["withheld"] is True
    assert "malignant" not in checked["withheld"]["title"] + checked["withheld"]["detail"]
    assert checked["voted"]["title"] == "Similar cases vote benign"
    assert "not a probability" in checked["voted"]["detail"]
    assert "estimate" in checked["size"]
    assert "8.4 mm" in checked["size"]
    assert "no estimate" in checked["none"]
    assert checked["parts"] == 2
    assert checked["link"] == (
        "/nodule-search/viewer?series_uid=1.2&center_xyz=1.00%2C2.35%2C-3.00&k=5&compare=7"
        "&study_uid=3.4"
    )


def test_the_panel_sends_the_token_when_asked_and_shows_every_failure(
    watched: Watched, stack: Stack
) -> None:
    """Against a stand-in service (routed in the page): a 401 asking for a bearer token makes the
    panel ask once and send it; a refused save and an SR without a SEG are said in the panel."""
    page = watched.page
    page.goto(f"{stack.ohif}/app-config.js")
    seen: list[str | None] = []

    def needs_token(route: Any) -> None:
        given = route.request.headers.get("authorization")
        seen.append(given)
        if given != "Bearer s3cret":
            route.fulfill(
                status=401,
                headers={"WWW-Authenticate": "Bearer", "Content-Type": "application/problem+json"},
                body=json.dumps({"status": 401, "detail": "missing or wrong access token"}),
            )
        else:
            route.fulfill(status=200, content_type="application/json", body='{"ok": true}')

    page.route("**/v1/index", needs_token)
    page.on("dialog", lambda dialog: dialog.accept("s3cret"))
    answer = page.evaluate(
        """async () => {
          const {Api} = await import('/nodule-search/panel/api.js');
          const api = new Api('', () => window.prompt('token?'), sessionStorage);
          return (await api.request('/v1/index')).json();
        }"""
    )
    assert answer == {"ok": True}
    assert seen == [None, "Bearer s3cret"]

    one_part = "--b1\r\nContent-Type: application/dicom\r\n\r\nSR\r\n--b1--\r\n"
    page.route(
        "**/v1/reports/sr?store=true&seg=true",
        lambda route: route.fulfill(
            status=201,
            headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=b1'},
            body=one_part,
        ),
    )
    said = page.evaluate(
        """async () => {
          const {SimilarNodulesPanel} = await import('/nodule-search/panel/panel.js');
          const panel = new SimilarNodulesPanel({services: {}, apiRoot: '', viewerPath: '/v'});
          panel.query = {series_uid: '1.2', study_uid: '3.4', center_xyz: [1, 2, 3], k: 5,
                         estimate_size: true};
          await panel.save();
          return panel.saved.textContent;
        }"""
    )
    assert "No mask could be made" in said
    assert "no SEG was stored" in said
    page.unroute("**/v1/reports/sr?store=true&seg=true")
    page.route(
        "**/v1/reports/sr?store=true&seg=true",
        lambda route: route.fulfill(
            status=422,
            content_type="application/problem+json",
            body=json.dumps({"status": 422, "detail": "store=true needs a PACS series"}),
        ),
    )
    shown = page.evaluate(
        """async () => {
          const {SimilarNodulesPanel} = await import('/nodule-search/panel/panel.js');
          const panel = new SimilarNodulesPanel({services: {}, apiRoot: '', viewerPath: '/v'});
          panel.query = {series_uid: '1.2', center_xyz: [1, 2, 3], k: 5, estimate_size: true};
          await panel.save();
          return {error: panel.error.textContent, hidden: panel.error.hidden};
        }"""
    )
    assert shown == {
        "error": "Not saved: store=true needs a PACS series (HTTP 422)",
        "hidden": False,
    }
