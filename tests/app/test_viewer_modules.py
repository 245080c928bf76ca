"""The viewer's pure ES modules, unit-tested in headless Chromium against the live service.

A page of the live ``nodule-api`` (its ``/readyz``, so none of the viewer's own code runs) imports
the modules under ``app/static/viewer/`` with ``import()`` and calls their functions: ratings in
words from the served vocabulary, level words, number formatting, problem details in words, the
token's one retry, every URL the viewer builds, the multipart split, the single-flight loader's
rule with a stub fetch, the geometry of the axial view, the ruler and the comparison, and the
deep link's parsing. The modules' source is checked too: type-checked, no markup strings, no LIDC
scale written into the client.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from app.preview import WINDOW_LEVEL_RANGE, WINDOW_PRESETS, WINDOW_WIDTH_RANGE
from model.clinical.labels import SCALES
from tests.helpers.live_server import ROOT, get_json
from tests.helpers.viewer_page import chromium

# Drives Chromium: make test, not test-fast.
pytestmark = pytest.mark.slow

STATIC = ROOT / "app" / "static"
MODULES = sorted((STATIC / "viewer").glob("*.js"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def page(server: str, browser: Browser) -> Iterator[Page]:
    """A page of the service's origin that runs none of the viewer (its modules are imported)."""
    opened = browser.new_page()
    opened.goto(f"{server}/readyz")
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def vocabulary(server: str) -> dict[str, Any]:
    served: dict[str, Any] = get_json(f"{server}/v1/vocabulary")
    return served


def call(page: Page, module: str, function: str, *args: Any) -> Any:
    """``function(...args)`` of ``app/static/viewer/<module>.js``, its answer as JSON."""
    return page.evaluate(
        "async ([module, name, args]) => "
        "(await import(`/static/viewer/${module}.js`))[name](...args)",
        [module, function, list(args)],
    )


# --- the source ---------------------------------------------------------------------------


def _code(path: Path) -> str:
    """A module's code without its comments (block comments and whole-line ones)."""
    text = re.sub(r"/\*.*?\*/", "", path.read_text(), flags=re.DOTALL)
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))


def test_every_module_is_type_checked_and_builds_no_markup() -> None:
    assert len(MODULES) >= 10
    for path in [STATIC / "viewer.js", *MODULES]:
        text = path.read_text()
        assert text.startswith("// @ts-check\n"), path.name
        assert "innerHTML" not in text, path.name
        assert "insertAdjacentHTML" not in text, path.name
    page = (STATIC / "index.html").read_text()
    assert '<script type="module" src="/static/viewer.js"></script>' in page


def test_no_lidc_scale_is_written_into_the_client() -> None:
    # The scales' multi-word meanings are distinctive; one-word ones ("solid") are not.
    meanings = {word for scale in SCALES.values() for word in scale if " " in word or "/" in word}
    assert meanings
    for path in [STATIC / "viewer.js", *MODULES]:
        code = _code(path)
        assert [m for m in meanings if m in code] == [], path.name


def test_every_module_imports_without_touching_the_page(server: str, browser: Browser) -> None:
    """Importing runs no DOM code (only the entry, viewer.js, wires the page), so the modules
    load on a page without the viewer's elements, as the tests here use them."""
    fresh = browser.new_page()
    errors: list[str] = []
    fresh.on("pageerror", lambda error: errors.append(str(error)))
    try:
        fresh.goto(f"{server}/readyz")
        before = fresh.evaluate("document.documentElement.outerHTML")
        names = [p.stem for p in MODULES]
        exported = fresh.evaluate(
            "async names => Promise.all(names.map(async n => "
            "Object.keys(await import(`/static/viewer/${n}.js`)).length))",
            names,
        )
        assert all(count > 0 for count in exported), dict(zip(names, exported, strict=True))
        assert fresh.evaluate("document.documentElement.outerHTML") == before
        assert errors == []
    finally:
        fresh.close()


# --- format.js ----------------------------------------------------------------------------


def test_numbers_to_fixed_digits_or_a_dash(page: Page) -> None:
    assert call(page, "format", "fmt", 3.14159, 2) == "3.14"
    assert call(page, "format", "fmt", 7) == "7.0"
    assert call(page, "format", "fmt", 0, 0) == "0"  # zero is a value, not a missing one
    assert call(page, "format", "fmt", None) == "–"
    assert call(page, "format", "clamp", 9000, [1, 5000]) == 5000
    assert call(page, "format", "clamp", -2000, [-1500, 3000]) == -1500
    assert call(page, "format", "clamp", 40, [1, 5000]) == 40
    assert call(page, "format", "given", 0) is True
    assert call(page, "format", "given", None) is False
    assert call(page, "format", "uidTail", "1.3.6.1.4.1.14519.5.2.1.6279") == "…9.5.2.1.6279"


# --- vocabulary.js and words.js -----------------------------------------------------------


def test_the_served_vocabulary_is_the_services_own(vocabulary: dict[str, Any]) -> None:
    presets = {p["name"]: (p["width"], p["level"]) for p in vocabulary["window_presets"]}
    assert presets == {n: (w.width, w.level) for n, w in WINDOW_PRESETS.items()}
    assert tuple(vocabulary["window_width_range"]) == WINDOW_WIDTH_RANGE
    assert tuple(vocabulary["window_level_range"]) == WINDOW_LEVEL_RANGE
    assert {c["name"]: tuple(c["scale"]) for c in vocabulary["characteristics"]} == SCALES


def test_rating_meanings_come_from_the_vocabulary(page: Page, vocabulary: dict[str, Any]) -> None:
    for name, scale in SCALES.items():
        for value, meaning in enumerate(scale, start=1):
            assert call(page, "words", "ratingMeaning", vocabulary, name, value) == meaning
    assert (
        call(page, "words", "ratingMeaning", vocabulary, "sphericity", 3.5)
        == "between ovoid and ovoid/round"
    )
    assert call(page, "words", "ratingText", vocabulary, "calcification", 6) == "6 (absent)"
    assert (
        call(page, "words", "ratingText", vocabulary, "malignancy", 4.5)
        == "4.5 (between moderately suspicious and highly suspicious)"
    )
    # Off the scale, or a characteristic the vocabulary does not name: the number alone.
    assert call(page, "words", "ratingMeaning", vocabulary, "internalStructure", 5) == ""
    assert call(page, "words", "ratingText", vocabulary, "internalStructure", 5) == "5"
    assert call(page, "words", "ratingMeaning", vocabulary, "nonsense", 1) == ""
    assert call(page, "words", "scaleText", vocabulary, "internalStructure") == (
        "1 soft tissue, 2 fluid, 3 fat, 4 air"
    )


def test_rating_meanings_follow_whatever_vocabulary_is_served(page: Page) -> None:
    made_up = {
        "window_presets": [],
        "window_width_range": [1, 2],
        "window_level_range": [0, 1],
        "characteristics": [{"name": "margin", "title": "edge", "scale": ["soft", "hard"]}],
        "texture_types": [],
    }
    assert call(page, "words", "ratingText", made_up, "margin", 1.5) == (
        "1.5 (between soft and hard)"
    )
    assert call(page, "words", "ratingMeaning", made_up, "calcification", 6) == ""
    none = page.evaluate(
        "async () => (await import('/static/viewer/vocabulary.js')).NO_VOCABULARY.characteristics"
    )
    assert none == []


def test_texture_line_names_the_type_the_service_read(
    page: Page, vocabulary: dict[str, Any]
) -> None:
    line = "textureLine"
    assert call(page, "words", line, vocabulary, 5, "solid") == "readers' texture 5 (solid)"
    assert call(page, "words", line, vocabulary, 3, "part-solid") == (
        "readers' texture 3 (part solid/mixed): part-solid"
    )
    assert call(page, "words", line, vocabulary, 1, "ground-glass") == (
        "readers' texture 1 (non-solid/GGO): ground-glass"
    )
    assert call(page, "words", line, vocabulary, 4, None) == "readers' texture 4 (solid/mixed)"


def test_window_presets_and_bounds(page: Page, vocabulary: dict[str, Any]) -> None:
    assert call(page, "vocabulary", "presetNamed", vocabulary, "mediastinum") == {
        "name": "mediastinum",
        "width": 350,
        "level": 50,
    }
    assert call(page, "vocabulary", "presetNamed", vocabulary, "brain") is None
    assert call(page, "vocabulary", "openingPreset", vocabulary)["name"] == "lung"
    no_lung = {**vocabulary, "window_presets": vocabulary["window_presets"][1:]}
    assert call(page, "vocabulary", "openingPreset", no_lung)["name"] == "mediastinum"
    assert call(page, "vocabulary", "clampWindow", vocabulary, 9000, -4000) == {
        "width": WINDOW_WIDTH_RANGE[1],
        "level": WINDOW_LEVEL_RANGE[0],
    }
    assert call(page, "vocabulary", "clampWindow", vocabulary, 590, 110) == {
        "width": 590,
        "level": 110,
    }
    assert call(page, "words", "presetWords", vocabulary["window_presets"][0]) == {
        "label": "Lung",
        "title": "W 1500 / L -600",
    }
    assert call(page, "words", "windowText", {"width": 350.4, "level": 49.6}) == "W 350 / L 50"


@pytest.mark.parametrize(
    ("name", "n_levels", "words"),
    [
        ("level 0 (full resolution)", 4, "fine detail: edges and texture"),
        ("level 1 (1/2 resolution)", 4, "local shape"),
        ("level 3 (1/8 resolution, bottleneck)", 4, "surroundings"),
        ("level 2 (1/4 resolution)", 5, "overall shape and size"),
        ("level 0 (full resolution)", 1, "surroundings"),
        ("size profile (HU by radius)", 4, "density from the centre outwards (size)"),
        ("bottleneck", 4, "overall appearance"),
        ("features", 4, "image features (the network's)"),
        ("density", 4, "density, calcium included"),
        ("learned", 4, "learned from readers' ratings"),
        ("something new", 4, "something new"),
        ("constructor", 4, "constructor"),  # not an inherited property of the words' table
    ],
)
def test_level_words(page: Page, name: str, n_levels: int, words: str) -> None:
    assert call(page, "words", "levelWords", name, n_levels) == words


def test_labels_in_words_and_colours(page: Page) -> None:
    assert call(page, "words", "labelText", None) == {"text": "no label", "colour": "#9ca3af"}
    malignant = {"ratings": [5, 4], "mean": 4.5, "label_binary": 1, "label_4class": 5}
    assert call(page, "words", "labelText", malignant) == {
        "text": "malignant (5)",
        "colour": "#d7191c",
    }
    benign = {**malignant, "label_binary": 0, "label_4class": 2}
    assert call(page, "words", "labelText", benign)["text"] == "benign (2)"
    unlabelled = {**malignant, "label_binary": None, "label_4class": None}
    assert call(page, "words", "labelText", unlabelled)["text"] == "no label"


def test_size_in_words(page: Page) -> None:
    size = {
        "mean_diameter_mm": 8.44,
        "long_axis_mm": 9.96,
        "short_axis_mm": 6.91,
        "volume_mm3": 312.6,
        "nodule_type": "part-solid",
        "lung_rads": "3",
        "method": "region growing",
        "note": "n",
    }
    assert call(page, "words", "sizeText", size) == (
        "mean diameter 8.4 mm (long 10.0 × short 6.9 mm) · volume 313 mm³ · part-solid"
        " · Lung-RADS 3 (size category)"
    )
    measured = {**size, "volume_mm3": None, "nodule_type": None, "type_assumed": True}
    measured["lung_rads"] = None
    assert call(page, "words", "sizeText", measured).endswith(
        "6.9 mm) · taken as solid (no type estimated)"
    )


def test_query_line(page: Page) -> None:
    indexed = {
        "series_uid": "1.2.3.4.5.6.7.8.9.10.11.12.13",
        "center_xyz": [-10.04, 20.0, -300.26],
        "nodule_id": 7,
        "index_version": "v1",
        "best_similarity": 0.98765,
        "match_threshold": 0.9,
    }
    assert call(page, "words", "queryText", indexed) == (
        "indexed nodule #7 · series ….10.11.12.13 at (-10.0, 20.0, -300.3) mm"
        " · catalogue v1 · best similarity 0.988 (threshold 0.900)"
    )
    upload = {"index_version": "v1", "center_xyz": None}
    assert call(page, "words", "queryText", upload) == "uploaded volume at (?) mm · catalogue v1"
    assert call(page, "words", "queryNoduleId", indexed) == 7
    assert call(page, "words", "queryNoduleId", upload) is None


def test_patient_scope(page: Page) -> None:
    scope = "patientScope"
    assert call(page, "words", scope, {"excluded_patient_id": "P1"}, {}) == {
        "included": False,
        "patient": "P1",
    }
    assert call(page, "words", scope, {"own_patient_included": True}, {}) == {
        "included": True,
        "patient": None,
    }
    assert call(page, "words", scope, {}, {"excludedPatient": "P2"}) == {
        "included": False,
        "patient": "P2",
    }
    assert call(page, "words", scope, {}, {"included": True})["included"] is True
    assert call(page, "words", scope, {}, {}) is None


def test_vote_share_and_its_old_name(page: Page) -> None:
    assert call(page, "words", "voteShare", {"malignant_share": 0.25}) == 0.25
    assert call(page, "words", "voteShare", {"malignant_probability": 0.75}) == 0.75
    both = {"malignant_share": 0.25, "malignant_probability": 0.75}
    assert call(page, "words", "voteShare", both) == 0.25


def test_scan_list_and_threshold_words(page: Page) -> None:
    scan = {"series_uid": "1.2.3.4.5.6.7.8.9.10", "patient_id": "P9", "n_nodules": 2}
    assert call(page, "words", "scanOptionText", scan) == "P9 · …5.6.7.8.9.10 (2 nodules)"
    assert call(page, "words", "scanOptionText", {**scan, "dicom": True}).endswith(" · DICOM")
    assert call(page, "words", "linkedOptionText", "9.8.7") == "series …9.8.7 (linked)"
    assert call(page, "words", "matchRule", 5).startswith("the 5th percentile of")
    assert call(page, "words", "matchRule", None) == "calibrated on this catalogue's own nodules"


# --- api.js -------------------------------------------------------------------------------


def test_every_url_the_viewer_requests(page: Page) -> None:
    wl = {"width": 350.4, "level": 49.6}
    uid = "1.2.840/7"
    assert call(page, "api", "windowQuery", wl) == "window=350&level=50"
    assert call(page, "api", "axialPath", uid, 12.5, wl) == (
        "/v1/scans/1.2.840%2F7/axial.png?z=12.5&window=350&level=50"
    )
    assert call(page, "api", "zoomPath", "1.2", [1.5, -2, 30.25], 64, wl) == (
        "/v1/scans/1.2/zoom.png?center_xyz=1.5,-2,30.25&fov_mm=64&window=350&level=50"
    )
    preview = call(page, "api", "scanPreviewPath", "1.2", [1, 2, 3])
    assert preview == "/v1/scans/1.2/preview.png?center_xyz=1,2,3"
    assert call(page, "api", "windowed", preview, wl) == f"{preview}&window=350&level=50"
    assert call(page, "api", "windowed", "/v1/nodules/4/preview.png", wl) == (
        "/v1/nodules/4/preview.png?window=350&level=50"
    )
    assert call(page, "api", "nodulePreviewPath", 4) == "/v1/nodules/4/preview.png"
    assert call(page, "api", "ohifPath", "1.2", [1, 2, 3]) == "/v1/scans/1.2/ohif?center_xyz=1,2,3"
    assert call(page, "api", "nodulePath", 4) == "/v1/nodules/4"
    assert call(page, "api", "nodulePath", 4, True) == "/v1/nodules/4?estimate_size=true"
    assert call(page, "api", "similarPath", 4, 5, None) == "/v1/nodules/4/similar?k=5"
    assert call(page, "api", "similarPath", 4, 5, "LIDC 1") == (
        "/v1/nodules/4/similar?k=5&exclude_patient_id=LIDC+1"
    )
    constants = page.evaluate(
        "async () => { const m = await import('/static/viewer/api.js'); return [m.INDEX_PATH,"
        " m.VOCABULARY_PATH, m.SCANS_PATH, m.MAP_PATH, m.SEARCH_COORDINATE_PATH,"
        " m.SEARCH_UPLOAD_PATH, m.REPORT_SR_PATH]; }"
    )
    assert constants == [
        "/v1/index",
        "/v1/vocabulary",
        "/v1/scans?limit=1000",
        "/v1/map",
        "/v1/search/coordinate",
        "/v1/search/upload",
        "/v1/reports/sr?seg=true",
    ]


FAILURE = """async ([body, status, statusText, type]) => {
    const { describeFailure } = await import('/static/viewer/api.js');
    return describeFailure(new Response(body, {status, statusText,
        headers: {'Content-Type': type}}));
}"""


def test_problem_details_in_words(page: Page) -> None:
    problem = '{"type": "about:blank", "title": "Unprocessable", "status": 422, "detail": "bad z"}'
    assert page.evaluate(FAILURE, [problem, 422, "", "application/problem+json"]) == "422: bad z"
    titled = '{"title": "Service Unavailable", "status": 503}'
    assert page.evaluate(FAILURE, [titled, 503, "", "application/problem+json"]) == (
        "503: Service Unavailable"
    )
    assert page.evaluate(FAILURE, ["<html>", 502, "Bad Gateway", "text/html"]) == (
        "502: Bad Gateway"
    )
    assert page.evaluate(FAILURE, ["", 500, "", "text/plain"]) == "500: request failed"


CLIENT = """async (script) => {
    const { Api, ApiError, TOKEN_KEY } = await import('/static/viewer/api.js');
    const sent = [], asked = [], stored = new Map();
    const storage = { getItem: k => stored.get(k) ?? null, setItem: (k, v) => stored.set(k, v) };
    const answers = [...script.answers];
    const fetch = async (url, init) => {
        sent.push([url, init.headers.get('Authorization')]);
        const next = answers.shift();
        if (next === 'network') throw new TypeError('Failed to fetch');
        if (next === 'abort') throw new DOMException('stopped', 'AbortError');
        return new Response(next.body, {status: next.status, headers: next.headers || {}});
    };
    const client = new Api({ askToken: () => { asked.push(1); return script.token; },
                             storage, fetch });
    try {
        const answer = await client.json('/v1/index');
        return { answer, sent, asked: asked.length, token: stored.get(TOKEN_KEY) ?? null };
    } catch (e) {
        return { error: e.message, name: e.name, api: e instanceof ApiError,
                 status: e.status ?? null, sent, asked: asked.length };
    }
}"""
BEARER = {"WWW-Authenticate": "Bearer"}
UNAUTHORIZED = {"body": '{"detail": "a token is needed"}', "status": 401, "headers": BEARER}


def test_the_token_is_asked_for_once_and_sent_again(page: Page) -> None:
    ok = {"body": '{"version": "v1"}', "status": 200}
    done = page.evaluate(CLIENT, {"answers": [UNAUTHORIZED, ok], "token": " s3cret "})
    assert done["answer"] == {"version": "v1"}
    assert done["sent"] == [["/v1/index", None], ["/v1/index", "Bearer s3cret"]]
    assert done["asked"] == 1
    assert done["token"] == "s3cret"


def test_a_wrong_token_is_asked_for_only_once(page: Page) -> None:
    failed = page.evaluate(CLIENT, {"answers": [UNAUTHORIZED, UNAUTHORIZED], "token": "wrong"})
    assert failed["asked"] == 1
    assert len(failed["sent"]) == 2
    assert failed["error"] == "401: a token is needed"
    assert failed["status"] == 401


def test_a_cancelled_token_prompt_gives_the_401(page: Page) -> None:
    failed = page.evaluate(CLIENT, {"answers": [UNAUTHORIZED], "token": None})
    assert failed["asked"] == 1
    assert len(failed["sent"]) == 1
    assert failed["error"] == "401: a token is needed"


def test_failures_become_api_errors(page: Page) -> None:
    missing = {"body": '{"detail": "no nodule 99"}', "status": 404}
    failed = page.evaluate(CLIENT, {"answers": [missing]})
    assert (failed["error"], failed["status"], failed["api"]) == ("404: no nodule 99", 404, True)
    assert failed["asked"] == 0  # a 401 without Bearer, or any other status, asks nothing
    down = page.evaluate(CLIENT, {"answers": ["network"]})
    assert down["error"] == "the service cannot be reached (Failed to fetch)"
    assert down["status"] == 0
    aborted = page.evaluate(CLIENT, {"answers": ["abort"]})
    assert aborted["name"] == "AbortError"  # a newer search's abort passes through as it is
    assert aborted["api"] is False


def test_multipart_answer_split_into_its_parts(page: Page) -> None:
    parts = page.evaluate(
        """async () => {
            const { boundaryOf, splitMultipart } = await import('/static/viewer/api.js');
            const type = 'multipart/related; type="application/dicom"; boundary="b0und"';
            const boundary = boundaryOf(type);
            const text = '--b0und\\r\\nContent-Type: application/dicom\\r\\n\\r\\nSR\\x00\\x01'
                + '\\r\\n--b0und\\r\\nContent-Type: application/dicom\\r\\n\\r\\nSEG!\\r\\n'
                + '--b0und--\\r\\n';
            const bytes = Uint8Array.from(text, c => c.charCodeAt(0));
            return { boundary, none: boundaryOf('application/dicom'),
                     parts: splitMultipart(bytes, boundary).map(p => Array.from(p)) };
        }"""
    )
    assert parts["boundary"] == "b0und"
    assert parts["none"] is None
    assert parts["parts"] == [[83, 82, 0, 1], [83, 69, 71, 33]]


# --- loader.js ----------------------------------------------------------------------------


LOADER = """async () => {
    const { SingleFlightLoader } = await import('/static/viewer/loader.js');
    const asked = [], shown = [], failed = [], busy = [];
    let inFlight = 0, most = 0;
    const pending = [];
    const fetch = (url) => {
        asked.push(url);
        inFlight += 1;
        most = Math.max(most, inFlight);
        return new Promise((resolve, reject) => pending.push({ url, resolve, reject }));
    };
    const until = async (done) => {
        for (let i = 0; i < 400 && !done(); i += 1) await new Promise(r => setTimeout(r, 5));
    };
    // End the request in flight; wait until the loader has asked for the next or gone idle.
    const settle = async (ok) => {
        const next = pending.shift();
        inFlight -= 1;
        if (ok) next.resolve(new Response(new Blob([next.url])));
        else next.reject(new Error('gone'));
        await until(() => pending.length > 0 || !loader.inFlight);
    };
    const loader = new SingleFlightLoader({
        fetch,
        show: async (wish, blob) => { shown.push([wish.url, await blob.text()]); },
        fail: (wish, e) => failed.push([wish.url, e.message]),
        busy: (b) => busy.push(b),
    });
    loader.want({ url: 'a' });
    loader.want({ url: 'b' });
    loader.want({ url: 'c' });
    const whileA = [...asked];
    const pendingWhileA = loader.pending.url;
    await settle(true);               // a shown; only the latest wish (c) goes next
    loader.want({ url: 'd' });
    await settle(false);              // c fails; d, wished meanwhile, goes next
    await settle(true);
    await loader.idle();
    const idleBusy = [...busy];
    loader.want({ url: 'e' });        // a later wish after idle starts at once
    const afterIdle = [...asked];
    await settle(true);
    await loader.idle();
    return { whileA, pendingWhileA, asked, shown, failed, most, idleBusy, afterIdle,
             inFlight: loader.inFlight, pending: loader.pending };
}"""


def test_the_loader_keeps_one_request_in_flight_and_the_latest_wish(page: Page) -> None:
    run = page.evaluate(LOADER)
    assert run["whileA"] == ["a"]  # b and c waited
    assert run["pendingWhileA"] == "c"
    assert run["asked"] == ["a", "c", "d", "e"]  # b was superseded, never requested
    assert run["shown"] == [["a", "a"], ["d", "d"], ["e", "e"]]
    assert run["failed"] == [["c", "gone"]]  # a failure is reported and the loader goes on
    assert run["most"] == 1
    assert run["idleBusy"] == [True, False]  # busy once for the whole burst
    assert run["afterIdle"] == ["a", "c", "d", "e"]
    assert run["inFlight"] is False
    assert run["pending"] is None


# --- geometry.js --------------------------------------------------------------------------

VIEW = {
    "origin": [-100.0, -50.0],
    "pixelMm": 0.5,
    "naturalWidth": 512,
    "naturalHeight": 512,
    "clientWidth": 256,
    "clientHeight": 256,
}


def test_world_and_screen_on_the_axial_view(page: Page) -> None:
    # The first pixel's centre is the extent's corner: half a pixel in, on screen.
    assert call(page, "geometry", "worldToScreen", VIEW, -100, -50) == {"left": 0.25, "top": 0.25}
    assert call(page, "geometry", "worldToScreen", VIEW, 0, 0) == {"left": 100.25, "top": 50.25}
    assert call(page, "geometry", "screenToWorld", VIEW, 100.25, 50.25) == [0, 0]
    assert call(page, "geometry", "screenPxPerMm", VIEW) == 1.0


def test_the_marker_keeps_clear_of_the_nodule_under_the_point(page: Page) -> None:
    nodules = [
        {"center_xyz": [0, 0, 0], "diameter_mm": 10},
        {"center_xyz": [1, 0, 0], "diameter_mm": 14},
        {"center_xyz": [50, 0, 0], "diameter_mm": 30},
    ]
    assert call(page, "geometry", "markRadiusMm", nodules, [1.8, 0, 0], 3) == 7
    assert call(page, "geometry", "markRadiusMm", nodules, [20, 20, 20], 3) == 3
    assert call(page, "geometry", "markRadiusMm", [], [0, 0, 0], 3) == 3


RULER = """async (clicks) => {
    const g = await import('/static/viewer/geometry.js');
    let ruler = { points: [], z: null };
    const seen = [];
    for (const [x, y, z] of clicks) {
        ruler = g.rulerClick(ruler, [x, y], z);
        seen.push({ n: ruler.points.length, z: ruler.z, axes: g.measuredAxes(ruler.points),
                    kinds: g.rulerKinds(ruler.points) });
    }
    return seen;
}"""


def test_the_ruler_measures_two_axes_on_one_slice(page: Page) -> None:
    seen = page.evaluate(
        RULER,
        [[0, 0, 5], [3, 4, 5], [0, 0, 5], [0, 10.004, 5], [1, 1, 5], [2, 2, 7.5]],
    )
    assert [s["n"] for s in seen] == [1, 2, 3, 4, 1, 1]  # a fifth click, another slice: anew
    assert [s["z"] for s in seen] == [5, 5, 5, 5, 5, 7.5]
    assert [s["axes"] for s in seen[:3]] == [None, None, None]
    # The shorter axis was drawn first: the longer is the long axis, rounded to 0.01 mm.
    assert seen[3]["axes"] == {"long_axis_mm": 10.0, "short_axis_mm": 5.0}
    assert seen[3]["kinds"] == ["short", "long"]
    assert seen[1]["kinds"] == ["long", "short"]


def test_a_typed_point_is_checked_against_the_scan(page: Page) -> None:
    scan = {"extent_min_xyz": [-100, -100, -300], "extent_max_xyz": [100, 100, -100]}
    inside = call(page, "geometry", "checkPoint", ["1", " -2.5 ", "-100.0005"], scan)
    assert inside == {"values": [1, -2.5, -100.0005], "problems": []}
    outside = call(page, "geometry", "checkPoint", ["1", "abc", "-60"], scan)
    assert outside["values"] == [1, None, None]
    assert outside["problems"] == [
        "y must be a number (mm)",
        "z -60.00 mm is outside this scan (z from -300.0 to -100.0 mm)",
    ]
    assert call(page, "geometry", "checkPoint", ["", "0", "0"], None)["problems"] == [
        "x must be a number (mm)"
    ]


def test_the_comparison_steps_and_brackets(page: Page) -> None:
    assert call(page, "geometry", "compareStep", [0.7, 2.5]) == 2.5
    assert call(page, "geometry", "compareStep", [None, 1.25]) == 1.25
    assert call(page, "geometry", "compareStep", [None, None]) == 1
    assert call(page, "geometry", "compareReach", 2.5, 30) == 30
    assert call(page, "geometry", "compareReach", 4, 30) == 28
    assert call(page, "geometry", "snapOffset", 6.1, 2.5, 30) == 5
    assert call(page, "geometry", "snapOffset", -99, 4, 30) == -28
    assert call(page, "geometry", "bracketShare", 4, 3, 2, 64) == {"share": 0.1875, "halfMm": 6}
    assert call(page, "geometry", "bracketShare", None, 3, 2, 64)["halfMm"] == 5
    assert call(page, "geometry", "bracketShare", 60, 3, 2, 64)["share"] == 0.95
    point = {"query": {"center_xyz": [3, 4, 0]}, "size_estimate": {"long_axis_mm": 9}}
    nodule = {"center_xyz": [0, 0, 0], "diameter_mm": 10}
    assert call(page, "geometry", "queryMarkRadiusMm", point, nodule) == 10  # 5 mm + 5 mm off
    assert call(page, "geometry", "queryMarkRadiusMm", point, None) == 4.5
    measured = {**point, "size_measured": {"long_axis_mm": 12}}
    assert call(page, "geometry", "queryMarkRadiusMm", measured, None) == 6
    assert call(page, "geometry", "queryMarkRadiusMm", {"query": {}}, None) is None


# --- map.js and navigate.js ---------------------------------------------------------------


def test_the_map_fills_its_view(page: Page) -> None:
    placed = page.evaluate(
        """async () => {
            const { mapScale } = await import('/static/viewer/map.js');
            const points = [{x: -3, y: 10}, {x: 5, y: 20}, {x: 1, y: 15}];
            const one = mapScale([{x: 2, y: 2}]);
            return [points.map(mapScale(points)), one({x: 2, y: 2})];
        }"""
    )
    assert placed == [[[15, 385], [385, 15], [200, 200]], [15, 385]]


def test_the_deep_link_is_read_as_the_point_form_would(page: Page) -> None:
    link = call(
        page,
        "navigate",
        "parseLink",
        "?series_uid=1.2.3&center_xyz=-10.5,20,-300.25&study_uid=9.8&k=8&compare=42",
    )
    assert link == {
        "body": {
            "series_uid": "1.2.3",
            "center_xyz": [-10.5, 20, -300.25],
            "k": 8,
            "filters": {"labelled_only": False},
            "estimate_size": True,
            "study_uid": "9.8",
        },
        "compare": "42",
    }
    plain = call(page, "navigate", "parseLink", "?series_uid=1.2.3&center_xyz=1,2,3")
    assert plain["body"]["k"] == 5
    assert "study_uid" not in plain["body"]
    assert plain["compare"] is None
    for broken in (
        "",
        "?series_uid=1.2.3",
        "?series_uid=1.2.3&center_xyz=1,2",
        "?center_xyz=1,2,3",
    ):
        assert call(page, "navigate", "parseLink", broken) is None
    assert call(page, "navigate", "parseLink", "?series_uid=1&center_xyz=1,x,3") is None
