"""A catalogue built straight from a PACS (DICOMweb), served back from it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.main import create_app
from app.settings import AppSettings
from indexer.cli import main as nodule_index
from model.ct.dicom import DicomSeriesSource
from model.ct.pacs import pacs_address, parse_pacs_address
from model.nn.embedder import Embedder
from model.preprocessing import extract_patch
from model.store.catalog import Catalog
from model.store.tables import Nodule
from tests.helpers.orthanc import Orthanc

# Runs a real Orthanc (DICOMweb): make test, not test-fast.
pytestmark = pytest.mark.slow


def test_pacs_addresses_round_trip() -> None:
    assert parse_pacs_address(pacs_address("1.2", "3.4")) == ("1.2", "3.4")
    assert parse_pacs_address("/data/subset0/1.2.mhd") is None
    assert parse_pacs_address("dicomweb:1.2") is None


def test_build_from_a_series_list_and_serve_it(
    orthanc: Orthanc,
    pacs_lidc: tuple[str, str, Path],
    shared_data: Path,
    app_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    study, series, folder = pacs_lidc
    with (shared_data / "luna16/annotations.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["seriesuid"] == series]
    listing = tmp_path / "series.csv"
    with listing.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["study_uid", "series_uid", "coordX", "coordY", "coordZ", "diameter_mm"])
        for r in rows:
            writer.writerow(
                [study, series, r["coordX"], r["coordY"], r["coordZ"], r["diameter_mm"]]
            )
    index = tmp_path / "index"
    args = ["build", "--series-list", str(listing), "--model", str(app_model)]
    args += ["--index", str(index), "--no-progress", "--workers", "1"]
    assert nodule_index([*args, "--dicomweb-url", orthanc.url]) == 2  # no credentials: refused
    monkeypatch.setenv("NODULE_DICOMWEB_USER", orthanc.user)
    monkeypatch.setenv("NODULE_DICOMWEB_PASSWORD", orthanc.password)
    assert nodule_index(args) == 2  # a series list needs the PACS's URL
    assert nodule_index([*args, "--dicomweb-url", orthanc.url]) == 0
    catalog = Catalog.open(index)
    with catalog.sessions() as session:
        nodules = session.query(Nodule).order_by(Nodule.id).all()
        assert len(nodules) == len(rows)
        assert nodules[0].scan.source_kind == "dicomweb"
        assert nodules[0].scan.source_path == pacs_address(study, series)
        first = (nodules[0].id, nodules[0].center_xyz, nodules[0].embedding_row)
    stored = np.asarray(catalog.embeddings[first[2]])
    catalog.close()
    # The vector from the PACS is the vector of the same nodule read from the files.
    embedder = Embedder.from_model_dir(app_model, "cpu")
    patch = extract_patch(DicomSeriesSource(folder), first[1], embedder.card.preprocessing)
    np.testing.assert_allclose(stored, embedder.embed_patches(patch[None])[0], atol=1e-5)
    # The service reads the recorded dicomweb: source back from the PACS.
    settings = AppSettings(
        index_dir=index,
        data_dir=tmp_path,
        device="cpu",
        dicomweb_url=orthanc.url,
        dicomweb_user=orthanc.user,
        dicomweb_password=SecretStr(orthanc.password),
    )
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/v1/search/coordinate", json={"series_uid": series, "center_xyz": list(first[1])}
        )
        assert response.status_code == 200, response.text
        # Read from the PACS and cut there: the point is that catalogue nodule, the query itself
        # (never its own neighbour), and the similarities are to the vectors built from the PACS.
        answer = response.json()
        assert answer["query"]["nodule_id"] == first[0]
        assert first[0] not in [n["id"] for n in answer["neighbors"]]
