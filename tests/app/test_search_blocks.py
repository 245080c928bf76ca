"""A model whose vector has every block (issue 29): one space for the service, uploads, the
indexer and the SR; the size the vector is read at; "why similar" per block."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import AppSettings
from model.ct.open import open_volume
from model.nn.embedder import Embedder
from model.nn.query import QuerySize, query_vector
from model.preprocessing import extract_patch
from model.store.catalog import Catalog
from model.store.tables import Nodule

BLOCKS = ["features", "size", "density", "shape", "learned"]


@pytest.fixture(scope="module")
def blocks_client(search_index: Path, synth_set: Path) -> Iterator[TestClient]:
    settings = AppSettings(index_dir=search_index, data_dir=synth_set, device="cpu")
    with TestClient(create_app(settings)) as client:
        yield client


def _nodules(index: Path) -> list[tuple[int, str, tuple[float, float, float], float]]:
    catalog = Catalog.open(index)
    try:
        with catalog.sessions() as session:
            return [
                (n.id, n.series_uid, n.center_xyz, n.diameter_mm)
                for n in session.query(Nodule).order_by(Nodule.id)
            ]
    finally:
        catalog.close()


def _stored(index: Path, nodule_id: int) -> np.ndarray:
    catalog = Catalog.open(index)
    try:
        return np.asarray(catalog.vector_of(nodule_id))
    finally:
        catalog.close()


def test_the_indexer_and_the_service_make_the_same_vector(
    blocks_client: TestClient, search_index: Path, search_model: Path, synth_set: Path
) -> None:
    nodule_id, series_uid, center, diameter = _nodules(search_index)[0]
    stored = _stored(search_index, nodule_id)
    embedder = Embedder.from_model_dir(search_model, "cpu")
    assert len(stored) == embedder.embedding_dim > embedder.feature_dim
    volume = open_volume(next(synth_set.glob(f"subset*/{series_uid}.mhd")))
    patch = extract_patch(volume, center, embedder.card.preprocessing)
    mine = query_vector(embedder, volume, center, patch, QuerySize.choose(recorded_mm=diameter))
    np.testing.assert_allclose(mine, stored, atol=1e-5)
    body = {"series_uid": series_uid, "center_xyz": list(center), "k": 3}
    result = blocks_client.post("/v1/search/coordinate", json=body).json()
    query = result["query"]
    assert query["levels"] == BLOCKS
    # A click on a catalogue nodule reads the vector at its recorded diameter.
    assert query["size_for_search"]["source"] == "recorded"
    assert query["size_for_search"]["diameter_mm"] == pytest.approx(diameter, abs=0.05)
    shares = np.array([embedder.card.search.shares()[b] for b in BLOCKS])  # type: ignore[union-attr,index]
    for neighbor in result["neighbors"]:
        expected = float(_stored(search_index, neighbor["id"]) @ stored)
        assert neighbor["similarity"] == pytest.approx(expected, abs=1e-4)
        # Why similar: the blocks' similarities, weighted by their shares, make the whole.
        blocks = np.array(neighbor["level_similarity"])
        assert blocks.shape == (5,)
        assert float(blocks @ shares) == pytest.approx(neighbor["similarity"], abs=1e-3)


def test_the_radiologists_axes_set_the_size_and_change_the_vector(
    blocks_client: TestClient, search_index: Path
) -> None:
    _, series_uid, center, diameter = _nodules(search_index)[0]
    body = {"series_uid": series_uid, "center_xyz": list(center), "k": 3}
    plain = blocks_client.post("/v1/search/coordinate", json=body).json()
    axes = {"long_axis_mm": 3 * diameter, "short_axis_mm": 2 * diameter}
    measured = blocks_client.post(
        "/v1/search/coordinate", json={**body, "measured_axes_mm": axes}
    ).json()
    size = measured["query"]["size_for_search"]
    assert size["source"] == "measured"
    assert size["diameter_mm"] == pytest.approx(2.5 * diameter, abs=0.05)
    assert [n["similarity"] for n in measured["neighbors"]] != [
        n["similarity"] for n in plain["neighbors"]
    ]


def test_a_point_off_the_catalogue_is_read_at_its_estimated_size(
    blocks_client: TestClient, search_index: Path
) -> None:
    nodules = _nodules(search_index)
    _, series_uid, center, diameter = nodules[0]
    # 1.2 radii away: inside the nodule's scan, no longer the catalogue nodule's point.
    off = [center[0] + 0.6 * diameter + 1.0, center[1], center[2]]
    result = blocks_client.post(
        "/v1/search/coordinate", json={"series_uid": series_uid, "center_xyz": off, "k": 3}
    ).json()
    assert result["query"]["nodule_id"] is None
    assert result["query"]["size_for_search"]["source"] in {"estimated", "none"}


def test_an_upload_of_a_catalogue_series_searches_the_same_space(
    blocks_client: TestClient, search_index: Path, synth_set: Path
) -> None:
    (folder,) = list((synth_set / "dicom").iterdir())
    mine = [n for n in _nodules(search_index) if n[1] == folder.name]
    if not mine:
        pytest.skip("the DICOM scan of this synthetic set holds no nodule")
    nodule_id, series_uid, center, _ = mine[0]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for p in sorted(folder.iterdir()):
            archive.writestr(f"series/{p.name}", p.read_bytes())
    form = {"k": "3", "center_xyz": ",".join(map(str, center)), "series_uid": series_uid}
    response = blocks_client.post(
        "/v1/search/upload", files={"file": ("dicom.zip", buffer.getvalue())}, data=form
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["query"]["nodule_id"] == nodule_id
    assert result["query"]["size_for_search"]["source"] == "recorded"
    stored = _stored(search_index, nodule_id)
    for neighbor in result["neighbors"]:
        expected = float(_stored(search_index, neighbor["id"]) @ stored)
        # The upload's patch comes from the DICOM copy of the scan (int16 HU, same grid).
        assert neighbor["similarity"] == pytest.approx(expected, abs=2e-3)


def test_an_upload_without_a_size_is_read_at_its_estimate(
    blocks_client: TestClient, search_index: Path, synth_set: Path, tmp_path: Path
) -> None:
    nodule_id, series_uid, center, _ = _nodules(search_index)[0]
    mhd = next(synth_set.glob(f"subset*/{series_uid}.mhd"))
    files = {
        mhd.name: mhd.read_bytes(),
        mhd.with_suffix(".raw").name: mhd.with_suffix(".raw").read_bytes(),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    form = {"k": "50", "center_xyz": ",".join(map(str, center))}
    response = blocks_client.post(
        "/v1/search/upload", files={"file": ("scan.zip", buffer.getvalue())}, data=form
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["query"]["size_for_search"]["source"] in {"estimated", "none"}
    assert result["query"]["levels"] == BLOCKS
    # The same image: its features block is the stored one's (the size may be estimated
    # differently from the recorded diameter, so the whole vector need not be nearest).
    same = [n for n in result["neighbors"] if n["id"] == nodule_id]
    assert same, "the uploaded nodule is not among its own scan's neighbours"
    assert same[0]["level_similarity"][0] > 0.999


def test_the_sr_holds_the_similarities_the_screen_shows(
    blocks_client: TestClient, synth_set: Path
) -> None:
    import pydicom

    from model.ct.dicom import DicomSeriesSource
    from tests.helpers.dicom import content_items

    folder = next((synth_set / "dicom").iterdir())
    source = DicomSeriesSource(folder)
    middle = np.asarray(source.geometry.shape_zyx, dtype=np.float64) / 2
    center = [float(v) for v in source.geometry.index_zyx_to_world(middle)]
    body = {"series_uid": source.series_uid, "center_xyz": center, "k": 3}
    screen = blocks_client.post("/v1/search/coordinate", json=body).json()
    answer = blocks_client.post("/v1/reports/sr", json=body)
    assert answer.status_code == 200, answer.text
    sr = pydicom.dcmread(io.BytesIO(answer.content))
    similarities = [
        float(item.MeasuredValueSequence[0].NumericValue)
        for item in content_items(sr.ContentSequence)
        if str(item.ConceptNameCodeSequence[0].CodeValue) == "SIM001"
    ]
    assert similarities == pytest.approx([n["similarity"] for n in screen["neighbors"]], abs=1e-3)


def test_a_model_without_blocks_names_no_search_size(client: TestClient, synth_set: Path) -> None:
    """The features alone read no size: the answer must not say one was searched at."""
    (folder,) = list((synth_set / "dicom").iterdir())
    from model.ct.dicom import DicomSeriesSource

    source = DicomSeriesSource(folder)
    middle = np.asarray(source.geometry.shape_zyx, dtype=np.float64) / 2
    center = [float(v) for v in source.geometry.index_zyx_to_world(middle)]
    body = {"series_uid": source.series_uid, "center_xyz": center, "k": 2}
    assert (
        client.post("/v1/search/coordinate", json=body).json()["query"]["size_for_search"] is None
    )


def test_the_index_endpoint_names_the_blocks_and_their_shares(blocks_client: TestClient) -> None:
    model = blocks_client.get("/v1/index").json()["model"]
    shares = model["search_blocks"]
    assert list(shares) == BLOCKS
    assert sum(shares.values()) == pytest.approx(1.0)
    assert model["embedding_dim"] > 0
