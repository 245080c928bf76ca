"""The queried nodule's size from the network's mask branch: the service and the indexer agree.

The catalogue is built with ``tests.segmenter``'s model (its mask branch is a known HU
threshold), so the branch finds the synthetic nodules without minutes of training.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import AppSettings
from indexer.evaluate.loading import cut_patches, load_nodules
from model.clinical.descriptors import DESCRIPTOR_NAMES
from model.clinical.measure import NETWORK_METHOD
from model.nn.embedder import Embedder
from model.store.catalog import Catalog


@pytest.fixture(scope="module")
def seg_client(seg_index: Path, synth_set: Path) -> Iterator[TestClient]:
    settings = AppSettings(index_dir=seg_index, data_dir=synth_set, device="cpu")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _size(client: TestClient, series_uid: str, center: tuple[float, float, float]) -> dict:  # type: ignore[type-arg]
    body = {"series_uid": series_uid, "center_xyz": list(center), "k": 2, "estimate_size": True}
    answer = client.post("/v1/search/coordinate", json=body)
    assert answer.status_code == 200, answer.text
    size: dict = answer.json()["size_estimate"]  # type: ignore[type-arg]
    return size


def test_the_service_sizes_a_nodule_by_the_mask_branch_as_the_indexer_does(
    seg_client: TestClient, seg_index: Path, seg_model: Path
) -> None:
    catalog = Catalog.open(seg_index)
    nodules = load_nodules(catalog, None)
    catalog.close()
    rows = np.arange(min(6, len(nodules.ids)), dtype=np.int64)
    embedder = Embedder.from_model_dir(seg_model, "cpu")
    assert embedder.segments
    cut = cut_patches(nodules, rows, embedder, workers=1)
    diameter = DESCRIPTOR_NAMES.index("mean_diameter_mm")
    volume = DESCRIPTOR_NAMES.index("volume_mm3")
    sized = 0
    for r in rows.tolist():
        size = _size(seg_client, nodules.series_uid[r], nodules.center_xyz[r])
        if size is None:
            assert np.isnan(cut.descriptors[r]).all()
            continue
        sized += 1
        assert size["estimated_by"] == "network mask"
        assert size["method"] == NETWORK_METHOD
        assert "not a diagnosis" in size["note"]
        assert size["superseded"] is False
        # The same mask: the same diameter (to the answer's 0.1 mm) and volume.
        assert size["mean_diameter_mm"] == pytest.approx(cut.descriptors[r, diameter], abs=0.051)
        assert size["volume_mm3"] == pytest.approx(cut.descriptors[r, volume], rel=1e-3)
    assert sized >= 3


def test_a_catalogue_nodule_detail_is_sized_by_the_mask_branch(
    seg_client: TestClient, seg_index: Path
) -> None:
    catalog = Catalog.open(seg_index)
    nodules = load_nodules(catalog, None)
    catalog.close()
    detail = seg_client.get(
        f"/v1/nodules/{int(nodules.ids[0])}", params={"estimate_size": True}
    ).json()
    point = _size(seg_client, nodules.series_uid[0], nodules.center_xyz[0])
    assert detail["size_estimate"] == point


def test_the_radiologists_axes_supersede_the_estimate(
    seg_client: TestClient, seg_index: Path
) -> None:
    catalog = Catalog.open(seg_index)
    nodules = load_nodules(catalog, None)
    catalog.close()
    body = {
        "series_uid": nodules.series_uid[0],
        "center_xyz": list(nodules.center_xyz[0]),
        "estimate_size": True,
        "measured_axes_mm": {"long_axis_mm": 9.0, "short_axis_mm": 7.0},
    }
    answer = seg_client.post("/v1/search/coordinate", json=body).json()
    assert answer["size_measured"]["mean_diameter_mm"] == 8.0
    assert answer["size_estimate"]["superseded"] is True
    # The estimate's type is what the measured category takes (the ruler has no type).
    assert answer["size_measured"]["nodule_type"] == answer["size_estimate"]["nodule_type"]


def test_the_index_info_names_the_mask_branch_and_its_policy(seg_client: TestClient) -> None:
    model = seg_client.get("/v1/index").json()["model"]
    assert model["segmentation"] is True
    # The test model's card has no policy: the branch sizes every nodule it finds.
    assert model["mask_policy"] == {"region_growing_mm": [], "chosen_by": None}
