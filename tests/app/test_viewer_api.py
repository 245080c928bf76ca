"""The endpoints behind the viewer page: scans, axial views, previews, the map, the page itself."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.preview import (
    MAX_VIEW_PX,
    MIN_DEFAULT_VIEW_PX,
    TILE_PX,
    WINDOW_LEVEL_RANGE,
    WINDOW_PRESETS,
    WINDOW_WIDTH_RANGE,
    axial_view_png,
)
from model.clinical.labels import CHARACTERISTICS, SCALES, texture_type
from model.ct.geometry import Geometry
from model.ct.open import load_volume
from model.ct.volume import CTVolume
from model.preprocessing import PatchSpec, patch_hu
from model.store.catalog import Catalog
from model.store.tables import Nodule


def _png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def test_page_and_its_assets_are_served_by_the_app(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "/static/viewer.js" in page.text
    assert "http://" not in page.text
    assert "https://" not in page.text  # nothing is fetched from elsewhere
    for asset in ("/static/viewer.js", "/static/viewer.css"):
        assert client.get(asset).status_code == 200
    assert client.get("/static/../main.py").status_code == 404
    assert client.get("/static/%2e%2e/main.py").status_code == 404


def test_scans_and_one_scan(client: TestClient, app_index: Path, synth_set: Path) -> None:
    listing = client.get("/v1/scans").json()
    catalog = Catalog.open(app_index)
    with catalog.sessions() as session:
        nodules = session.query(Nodule).all()
        per_scan: dict[str, list[int]] = {}
        for n in nodules:
            per_scan.setdefault(n.series_uid, []).append(n.id)
    catalog.close()
    assert listing["total"] == len(per_scan)
    assert {s["series_uid"]: s["n_nodules"] for s in listing["scans"]} == {
        uid: len(ids) for uid, ids in per_scan.items()
    }
    assert len(client.get("/v1/scans?limit=1").json()["scans"]) == 1
    assert client.get("/v1/scans?limit=0").status_code == 422
    uid = listing["scans"][0]["series_uid"]
    scan = client.get(f"/v1/scans/{uid}").json()
    assert sorted(n["id"] for n in scan["nodules"]) == sorted(per_scan[uid])
    volume = load_volume(next(synth_set.glob(f"subset*/{uid}.mhd")))
    low, high = volume.geometry.extent_world_xyz()
    assert scan["extent_min_xyz"] == pytest.approx(low.tolist())
    assert scan["extent_max_xyz"] == pytest.approx(high.tolist())
    assert client.get("/v1/scans/1.2.3.4.5").status_code == 404


def test_axial_view_is_world_aligned_and_bounded(client: TestClient) -> None:
    uid = client.get("/v1/scans").json()["scans"][0]["series_uid"]
    scan = client.get(f"/v1/scans/{uid}").json()
    z = (scan["extent_min_xyz"][2] + scan["extent_max_xyz"][2]) / 2
    response = client.get(f"/v1/scans/{uid}/axial.png", params={"z": z})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["X-Window"] == "1500/-600"  # the lung window by default
    pixel = float(response.headers["X-Pixel-MM"])
    width, height = _png_size(response.content)
    span_x = scan["extent_max_xyz"][0] - scan["extent_min_xyz"][0]
    span_y = scan["extent_max_xyz"][1] - scan["extent_min_xyz"][1]
    # Pixel (r, c) is world (min_x + c * pixel, min_y + r * pixel): the image covers the extent.
    assert width == int(span_x / pixel + 1e-6) + 1
    assert height == int(span_y / pixel + 1e-6) + 1
    # The test scans have about 112 voxels a side: drawn finer, at >= 512 px, for the browser.
    assert MIN_DEFAULT_VIEW_PX <= max(width, height) <= MAX_VIEW_PX
    assert pixel <= min(scan["spacing_xyz"])
    tiny = client.get(f"/v1/scans/{uid}/axial.png", params={"z": z, "pixel_mm": 0.11})
    assert max(_png_size(tiny.content)) <= MAX_VIEW_PX
    coarse = client.get(f"/v1/scans/{uid}/axial.png", params={"z": z, "pixel_mm": 2.0})
    assert float(coarse.headers["X-Pixel-MM"]) == 2.0
    assert max(_png_size(coarse.content)) == int(max(span_x, span_y) / 2.0 + 1e-6) + 1
    outside = client.get(f"/v1/scans/{uid}/axial.png", params={"z": scan["extent_max_xyz"][2] + 50})
    assert outside.status_code == 422
    assert "outside the scan" in outside.json()["detail"]
    assert client.get(f"/v1/scans/{uid}/axial.png", params={"z": "nan"}).status_code == 422


def test_axial_views_of_large_scans_stay_bounded() -> None:
    """A 400 mm field at 0.5 mm (801 voxels a side) is drawn at 768 px, however fine asked."""
    geometry = Geometry(
        origin_xyz=(-200.0, -200.0, -10.0),
        spacing_xyz=(0.5, 0.5, 5.0),
        direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
        shape_zyx=(3, 801, 801),
    )
    hu = np.full(geometry.shape_zyx, -850.0, dtype=np.float32)
    hu[:, 390:410, 390:410] = 40.0
    volume = CTVolume(hu_zyx=hu, geometry=geometry)
    for asked in (None, 0.11, 0.5):
        png, pixel = axial_view_png(volume, -5.0, asked)
        assert _png_size(png) == (MAX_VIEW_PX, MAX_VIEW_PX)
        assert pixel == pytest.approx(400.0 / (MAX_VIEW_PX - 1))
    png, pixel = axial_view_png(volume, -5.0, 2.0)
    assert _png_size(png) == (201, 201)
    grey = _grey(png)
    assert grey[100, 100] > grey[10, 10]  # the soft-tissue square at the centre, lung around it


def _grey(data: bytes) -> npt.NDArray[np.uint8]:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image, dtype=np.uint8)


def test_axial_tiles_sample_the_patch_function_at_every_pixel(
    client: TestClient, synth_set: Path
) -> None:
    """Views wider than the patch function's 256 px are tiles of it: no seam, no shift."""
    uid = client.get("/v1/scans").json()["scans"][0]["series_uid"]
    scan = client.get(f"/v1/scans/{uid}").json()
    x0, y0 = scan["extent_min_xyz"][0], scan["extent_min_xyz"][1]
    z = scan["nodules"][0]["center_xyz"][2] if scan["nodules"] else scan["extent_min_xyz"][2]
    volume = load_volume(next(synth_set.glob(f"subset*/{uid}.mhd")))
    for preset in ("lung", "bone"):
        window = WINDOW_PRESETS[preset]
        response = client.get(
            f"/v1/scans/{uid}/axial.png",
            params={"z": z, "window": window.width, "level": window.level},
        )
        assert response.status_code == 200, response.text
        grey = _grey(response.content)
        pixel = float(response.headers["X-Pixel-MM"])
        assert max(grey.shape) > TILE_PX
        rows = sorted({0, TILE_PX - 1, TILE_PX, grey.shape[0] // 3, grey.shape[0] - 1})
        cols = sorted({0, TILE_PX - 1, TILE_PX, 2 * grey.shape[1] // 3, grey.shape[1] - 1})
        spec = PatchSpec(patch_shape_zyx=(1, 1, 1), spacing_mm=pixel, hu_window=window.hu_range)
        for r in rows:
            for c in cols:
                hu = patch_hu(volume, (x0 + c * pixel, y0 + r * pixel, z), spec)
                assert abs(int(grey[r, c]) - int(window.grey(hu)[0, 0, 0])) <= 1, (preset, r, c)


def test_window_and_level_change_the_pixels(client: TestClient) -> None:
    uid = client.get("/v1/scans").json()["scans"][0]["series_uid"]
    scan = client.get(f"/v1/scans/{uid}").json()
    nodule = scan["nodules"][0]
    z = nodule["center_xyz"][2]
    views = {}
    for name, window in WINDOW_PRESETS.items():
        params = {"z": z, "window": window.width, "level": window.level}
        response = client.get(f"/v1/scans/{uid}/axial.png", params=params)
        assert response.headers["X-Window"] == f"{window.width:g}/{window.level:g}"
        views[name] = _grey(response.content)
    # Lung parenchyma (about -850 HU) is mid-grey in the lung window and black in the others;
    # the mediastinal window spreads soft tissue over the grey scale the lung window compresses.
    assert (views["mediastinum"] == 0).mean() > (views["lung"] == 0).mean() + 0.2
    assert not np.array_equal(views["bone"], views["mediastinum"])
    # Only one of the two given: the other stays the lung window's.
    level_only = client.get(f"/v1/scans/{uid}/axial.png", params={"z": z, "level": 50})
    assert level_only.headers["X-Window"] == "1500/50"
    center = ",".join(str(v) for v in nodule["center_xyz"])
    lung = client.get(f"/v1/scans/{uid}/preview.png", params={"center_xyz": center})
    bone = client.get(
        f"/v1/scans/{uid}/preview.png", params={"center_xyz": center, "window": 1800, "level": 400}
    )
    assert _png_size(bone.content) == _png_size(lung.content)
    assert not np.array_equal(_grey(bone.content), _grey(lung.content))
    thumb = client.get(f"/v1/nodules/{nodule['id']}/preview.png", params={"window": 350})
    assert thumb.status_code == 200
    assert not np.array_equal(
        _grey(thumb.content), _grey(client.get(f"/v1/nodules/{nodule['id']}/preview.png").content)
    )


@pytest.mark.parametrize(
    ("params", "phrase"),
    [
        ({"window": 0}, "window"),
        ({"window": -100}, "window"),
        ({"window": 1e6}, "window"),
        ({"window": "nan"}, "window"),
        ({"window": "inf"}, "window"),
        ({"level": "nan"}, "level"),
        ({"level": 1e9}, "level"),
        ({"level": -1e9}, "level"),
        ({"level": "bright"}, "level"),
    ],
)
def test_nonsense_windows_are_422(
    client: TestClient, params: dict[str, float | str], phrase: str
) -> None:
    uid = client.get("/v1/scans").json()["scans"][0]["series_uid"]
    scan = client.get(f"/v1/scans/{uid}").json()
    nodule = scan["nodules"][0]
    center = ",".join(str(v) for v in nodule["center_xyz"])
    bases: list[tuple[str, dict[str, float | str]]] = [
        (f"/v1/scans/{uid}/axial.png", {"z": nodule["center_xyz"][2]}),
        (f"/v1/scans/{uid}/preview.png", {"center_xyz": center}),
        (f"/v1/nodules/{nodule['id']}/preview.png", {}),
    ]
    for url, base in bases:
        response = client.get(url, params={**base, **params})
        assert response.status_code == 422, (url, params)
        assert phrase in response.json()["detail"]


def test_point_preview_and_its_errors(client: TestClient) -> None:
    uid = client.get("/v1/scans").json()["scans"][0]["series_uid"]
    scan = client.get(f"/v1/scans/{uid}").json()
    center = ",".join(str(v) for v in scan["nodules"][0]["center_xyz"])
    ok = client.get(f"/v1/scans/{uid}/preview.png", params={"center_xyz": center})
    assert ok.status_code == 200
    assert _png_size(ok.content) == (3 * 128, 128)
    for bad in ("1,2", "a,b,c", "nan,0,0"):
        response = client.get(f"/v1/scans/{uid}/preview.png", params={"center_xyz": bad})
        assert response.status_code == 422
        assert "center_xyz" in response.json()["detail"]
    far = client.get(f"/v1/scans/{uid}/preview.png", params={"center_xyz": "9999,0,0"})
    assert far.status_code == 422


def test_map_points_come_from_the_catalogue(client: TestClient, app_index: Path) -> None:
    body = client.get("/v1/map").json()
    catalog = Catalog.open(app_index)
    with catalog.sessions() as session:
        expected = {n.id: (n.map_x, n.map_y) for n in session.query(Nodule)}
    catalog.close()
    assert body["index_version"] == catalog.version
    got = {p["id"]: (p["x"], p["y"]) for p in body["points"]}
    assert got.keys() == expected.keys()
    for i, xy in got.items():
        assert xy == pytest.approx(expected[i])


def test_upload_can_return_the_query_patch(client: TestClient, synth_set: Path) -> None:
    hu = np.full((40, 40, 40), -800, dtype=np.int16)
    hu[15:25, 15:25, 15:25] = 30
    buffer = io.BytesIO()
    np.save(buffer, hu)
    response = client.post(
        "/v1/search/upload",
        files={"file": ("cube.npy", buffer.getvalue())},
        data={"spacing_zyx": "1,1,1", "k": "2", "preview": "true"},
    )
    assert response.status_code == 200, response.text
    png = base64.b64decode(response.json()["query"]["preview_png_base64"])
    width, height = _png_size(png)
    assert width == 3 * height


def test_zoomed_view_is_centred_and_bounded(client: TestClient, synth_set: Path) -> None:
    mhd = {p.stem: p for p in synth_set.glob("subset*/*.mhd")}
    uid = next(
        s["series_uid"]
        for s in client.get("/v1/scans").json()["scans"]
        if s["series_uid"] in mhd and s["n_nodules"]
    )
    scan = client.get(f"/v1/scans/{uid}").json()
    x, y, z = scan["nodules"][0]["center_xyz"]
    ok = client.get(f"/v1/scans/{uid}/zoom.png", params={"center_xyz": f"{x},{y},{z}"})
    assert ok.status_code == 200
    assert _png_size(ok.content) == (256, 256)
    assert float(ok.headers["X-Pixel-MM"]) == pytest.approx(64.0 / 256)
    # The middle pixel is the point: the same HU as the patch function gives there.
    source = load_volume(mhd[uid])
    one = PatchSpec(
        patch_shape_zyx=(1, 1, 1), spacing_mm=0.25, hu_window=WINDOW_PRESETS["lung"].hu_range
    )
    expected = WINDOW_PRESETS["lung"].grey(patch_hu(source, (x, y, z), one))[0, 0, 0]
    with Image.open(io.BytesIO(ok.content)) as image:
        middle = np.asarray(image)[128, 128]
    assert abs(int(middle) - int(expected)) <= 40  # a half-pixel shift on a 0.25 mm grid
    for params, phrase in (
        ({"center_xyz": f"{x},{y},9999"}, "outside"),
        ({"center_xyz": f"{x},{y},{z}", "fov_mm": "2"}, "fov_mm"),
        ({"center_xyz": "1,2"}, "center_xyz"),
    ):
        response = client.get(f"/v1/scans/{uid}/zoom.png", params=params)
        assert response.status_code == 422, params
        assert phrase in response.json()["detail"], response.json()


def test_why_similar_the_level_similarities_make_up_the_similarity(client: TestClient) -> None:
    body = client.get("/v1/nodules/0/similar", params={"k": 4}).json()
    levels = body["query"]["levels"]
    assert levels[0].startswith("level 0")
    assert "bottleneck" in levels[-1]
    for n in body["neighbors"]:
        assert len(n["level_similarity"]) == len(levels)
        # Each level's block is unit length in the search vector: the cosine similarity is the
        # mean of the levels' similarities (the app's model uses no size profile).
        assert np.mean(n["level_similarity"]) == pytest.approx(n["similarity"], abs=1e-3)


def test_a_nodules_detail_has_its_readers_characteristics(client: TestClient) -> None:
    ids = [p["id"] for p in client.get("/v1/map").json()["points"]]
    details = [client.get(f"/v1/nodules/{i}").json() for i in ids]
    read = [d for d in details if d["characteristics"]]
    assert read, "no synthetic nodule has reads"
    for d in read:
        assert set(d["characteristics"]) <= set(CHARACTERISTICS)
        if d["labels"] and d["labels"]["ratings"]:
            assert d["characteristics"]["malignancy"] == pytest.approx(
                float(np.median(d["labels"]["ratings"]))
            )
        # The readers' texture as a type, by the service's one rule (the viewer shows it).
        assert d["texture_type"] == texture_type(d["characteristics"]["texture"])
    assert all(d["texture_type"] is None for d in details if not d["characteristics"])
    assert all(d["size_estimate"] is None for d in details)
    sized = client.get(f"/v1/nodules/{read[0]['id']}", params={"estimate_size": "true"}).json()
    if sized["size_estimate"] is not None:
        assert sized["size_estimate"]["mean_diameter_mm"] > 0
    assert client.get("/v1/nodules/999999").status_code == 404


def test_vocabulary_serves_the_domain_terms_the_viewer_shows(client: TestClient) -> None:
    """Window presets and bounds, the LIDC scales and the texture types, from their one source."""
    terms = client.get("/v1/vocabulary").json()
    presets = {p["name"]: (p["width"], p["level"]) for p in terms["window_presets"]}
    assert presets == {n: (w.width, w.level) for n, w in WINDOW_PRESETS.items()}
    assert tuple(terms["window_width_range"]) == WINDOW_WIDTH_RANGE
    assert tuple(terms["window_level_range"]) == WINDOW_LEVEL_RANGE
    assert [c["name"] for c in terms["characteristics"]] == list(CHARACTERISTICS)
    scales = {c["name"]: c["scale"] for c in terms["characteristics"]}
    assert scales["calcification"][-1] == "absent"
    assert scales == {name: list(scale) for name, scale in SCALES.items()}
    assert {t["texture"]: t["type"] for t in terms["texture_types"]} == {
        1: "ground-glass",
        2: "ground-glass",
        3: "part-solid",
        4: "part-solid",
        5: "solid",
    }
