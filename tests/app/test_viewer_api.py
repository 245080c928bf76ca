"""The endpoints behind the viewer page: scans, axial views, previews, the map, the page itself."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.preview import MAX_VIEW_PX
from model.ct import load_volume
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
    pixel = float(response.headers["X-Pixel-MM"])
    width, height = _png_size(response.content)
    span_x = scan["extent_max_xyz"][0] - scan["extent_min_xyz"][0]
    span_y = scan["extent_max_xyz"][1] - scan["extent_min_xyz"][1]
    # Pixel (r, c) is world (min_x + c * pixel, min_y + r * pixel): the image covers the extent.
    assert width == int(span_x / pixel + 1e-6) + 1
    assert height == int(span_y / pixel + 1e-6) + 1
    assert max(width, height) == MAX_VIEW_PX
    tiny = client.get(f"/v1/scans/{uid}/axial.png", params={"z": z, "pixel_mm": 0.11})
    assert max(_png_size(tiny.content)) <= MAX_VIEW_PX
    outside = client.get(f"/v1/scans/{uid}/axial.png", params={"z": scan["extent_max_xyz"][2] + 50})
    assert outside.status_code == 422
    assert "outside the scan" in outside.json()["detail"]
    assert client.get(f"/v1/scans/{uid}/axial.png", params={"z": "nan"}).status_code == 422


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
