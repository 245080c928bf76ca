"""The service on a small synthetic catalogue (TestClient; the lifespan runs)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from model.ct import open_volume
from model.embedder import Embedder
from model.preprocessing import extract_patch
from model.store.catalog import Catalog
from model.store.tables import Nodule


def _first_nodule(app_index: Path) -> tuple[int, str, tuple[float, float, float], str | None]:
    catalog = Catalog.open(app_index)
    with catalog.sessions() as session:
        nodule = session.query(Nodule).order_by(Nodule.id).first()
        assert nodule is not None
        result = (nodule.id, nodule.series_uid, nodule.center_xyz, nodule.scan.patient_id)
    catalog.close()
    return result


def test_health_ready_and_index(client: TestClient, app_index: Path) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    info = client.get("/v1/index").json()
    catalog = Catalog.open(app_index)
    assert info["version"] == catalog.version
    assert info["n_nodules"] == catalog.manifest["n_nodules"]
    assert info["model"]["fingerprint"] == catalog.model_fingerprint
    catalog.close()


def test_coordinate_query_finds_the_nodule_itself(client: TestClient, app_index: Path) -> None:
    nodule_id, series_uid, center, patient = _first_nodule(app_index)
    body = {"series_uid": series_uid, "center_xyz": list(center), "k": 4}
    response = client.post("/v1/search/coordinate", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    first = result["neighbors"][0]
    assert first["id"] == nodule_id
    assert first["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert len(result["neighbors"]) == 4
    assert result["query"]["series_uid"] == series_uid
    assert result["query"]["index_zyx"] is not None
    vote = result["vote"]
    assert vote["n_labelled"] == sum(
        1 for n in result["neighbors"] if n["labels"] and n["labels"]["label_binary"] is not None
    )
    excluded = client.post(
        "/v1/search/coordinate", json={**body, "filters": {"exclude_patient_id": patient}}
    ).json()
    assert all(n["patient_id"] != patient for n in excluded["neighbors"])
    assert nodule_id not in [n["id"] for n in excluded["neighbors"]]


def test_service_embedding_equals_the_indexers(
    client: TestClient, app_index: Path, synth_set: Path
) -> None:
    nodule_id, series_uid, center, _ = _first_nodule(app_index)
    catalog = Catalog.open(app_index)
    stored = catalog.vector_of(nodule_id)
    embedder = Embedder.from_model_dir(Path(str(catalog.manifest["model_dir"])), "cpu")
    catalog.close()
    path = next(synth_set.glob(f"subset*/{series_uid}.mhd"))
    service_side = embedder.embed_patches(
        extract_patch(open_volume(path), center, embedder.card.preprocessing)[None]
    )[0]
    np.testing.assert_allclose(service_side, stored, atol=1e-5)
    # And through the HTTP path: the top similarity is the dot product of the two.
    result = client.post(
        "/v1/search/coordinate", json={"series_uid": series_uid, "center_xyz": list(center), "k": 1}
    ).json()
    assert result["neighbors"][0]["similarity"] == pytest.approx(
        float(stored @ service_side), abs=1e-5
    )


def test_nodule_and_similar(client: TestClient, app_index: Path) -> None:
    nodule_id, series_uid, _, _ = _first_nodule(app_index)
    nodule = client.get(f"/v1/nodules/{nodule_id}").json()
    assert nodule["series_uid"] == series_uid
    assert nodule["labels"]["ratings"]
    similar = client.get(f"/v1/nodules/{nodule_id}/similar", params={"k": 3}).json()
    assert len(similar["neighbors"]) == 3
    assert nodule_id not in [n["id"] for n in similar["neighbors"]]
    labelled = client.get(
        f"/v1/nodules/{nodule_id}/similar", params={"k": 3, "labelled_only": True}
    ).json()
    assert all(n["labels"]["label_binary"] is not None for n in labelled["neighbors"])


@pytest.mark.parametrize(
    ("method", "url", "body", "status", "phrase"),
    [
        (
            "post",
            "/v1/search/coordinate",
            {"series_uid": "1.2.3.4", "center_xyz": [0, 0, 0]},
            404,
            "not a stored CT",
        ),
        ("get", "/v1/nodules/999999", None, 404, "not in the catalogue"),
        ("get", "/v1/nodules/999999/similar", None, 404, "not in the catalogue"),
        (
            "post",
            "/v1/search/coordinate",
            {"series_uid": "x", "center_xyz": [0, 0]},
            422,
            "center_xyz",
        ),
        (
            "post",
            "/v1/search/coordinate",
            {"series_uid": "x", "center_xyz": [0, 0, 0], "k": 0},
            422,
            "k",
        ),
    ],
)
def test_errors_say_what_was_wrong(
    client: TestClient,
    method: str,
    url: str,
    body: dict[str, object] | None,
    status: int,
    phrase: str,
) -> None:
    response = client.request(method.upper(), url, json=body)
    assert response.status_code == status
    assert phrase in response.text


def test_point_outside_the_volume_is_422(client: TestClient, synth_set: Path) -> None:
    with (synth_set / "annotations.csv").open() as f:
        series_uid = next(csv.DictReader(f))["seriesuid"]
    response = client.post(
        "/v1/search/coordinate", json={"series_uid": series_uid, "center_xyz": [9999, 0, 0]}
    )
    assert response.status_code == 422
    assert "outside the volume" in response.json()["detail"]


def test_nan_is_refused(client: TestClient) -> None:
    response = client.post(
        "/v1/search/coordinate",
        content='{"series_uid": "x", "center_xyz": [NaN, 0, 0]}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422


def test_preview_png(client: TestClient, app_index: Path) -> None:
    import io

    from PIL import Image

    nodule_id, *_ = _first_nodule(app_index)
    response = client.get(f"/v1/nodules/{nodule_id}/preview.png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (384, 128)
    pixels = np.asarray(image)
    # The nodule is at the centre of each view and brighter than the lung around it.
    assert pixels[60:68, 60:68].mean() > pixels[:16, :16].mean()
    assert client.get("/v1/nodules/999999/preview.png").status_code == 404


def test_metrics(client: TestClient) -> None:
    client.get("/healthz")
    client.get("/v1/nodules/999999")
    text = client.get("/metrics").text
    assert 'nodule_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'route="/v1/nodules/{nodule_id}",status="404"' in text
    assert "nodule_catalogue_nodules" in text
    assert "nodule_request_seconds_bucket" in text
