"""``GET /v1/scans/{uid}/ohif``: the link to an OHIF Viewer over the PACS, and when there is none.

The link of a PACS series, and OHIF landing on its slice, are in test_ohif_browser.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import AppSettings


def _point(client: TestClient) -> tuple[str, str]:
    scan = next(s for s in client.get("/v1/scans").json()["scans"] if s["n_nodules"])
    detail = client.get(f"/v1/scans/{scan['series_uid']}").json()
    assert detail["from_pacs"] is False  # files: the synthetic set
    center = ",".join(str(v) for v in detail["nodules"][0]["center_xyz"])
    return scan["series_uid"], center


def test_without_an_ohif_viewer_there_is_no_link(client: TestClient) -> None:
    uid, center = _point(client)
    answer = client.get(f"/v1/scans/{uid}/ohif", params={"center_xyz": center})
    assert answer.status_code == 404
    assert "NODULE_OHIF_URL" in answer.json()["detail"]


@pytest.fixture
def with_ohif(app_index: Path, synth_set: Path) -> Iterator[TestClient]:
    settings = AppSettings(
        index_dir=app_index, data_dir=synth_set, device="cpu", ohif_url="http://ohif.example/"
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_series_read_from_files_has_no_ohif_link(with_ohif: TestClient) -> None:
    uid, center = _point(with_ohif)
    answer = with_ohif.get(f"/v1/scans/{uid}/ohif", params={"center_xyz": center})
    assert answer.status_code == 422
    assert "not read from the PACS" in answer.json()["detail"]
    missing = with_ohif.get(f"/v1/scans/{uid}/ohif")
    assert missing.status_code == 422  # center_xyz is required
