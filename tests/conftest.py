"""Shared fixtures: the real data in shared/data, and a small synthetic set built for tests."""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from indexer.cli import main as nodule_index
from indexer.data.synth.generate import generate
from model.clinical.labels import CHARACTERISTICS
from model.nn.checkpoint import save_model
from model.nn.network import NetworkConfig, NoduleNet
from tests.helpers.data import APP_SPEC, PROJECT_ROOT, RealSeries, small_config
from tests.helpers.orthanc import Orthanc
from tests.helpers.segmenter import threshold_segmenter

#: The Host header Starlette's TestClient sends: the services the tests start answer it too.
TEST_HOSTS = "localhost,127.0.0.1,[::1],testserver"


@pytest.fixture(scope="session", autouse=True)
def _test_client_host() -> Iterator[None]:
    """Every AppSettings a test makes allows the TestClient's ``testserver`` host."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NODULE_ALLOWED_HOSTS", TEST_HOSTS)
        yield


def shared_data_dir() -> Path:
    """``$NODULE_SHARED_DATA``, or ``<project root>/../shared/data``."""
    env = os.environ.get("NODULE_SHARED_DATA")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; the test is skipped only when the folder itself is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(
            "../shared/data is absent (CI and dev machines have it); real-data test skipped"
        )
    return path


@pytest.fixture(scope="session")
def real_series(
    shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealSeries]:
    """Lazily extracted real series: ``real_series["LIDC-IDRI-0001"]`` is a DICOM folder.

    The extracted files (about 320 MB for all four) are removed at the end of the session, so the
    temporary folders pytest keeps from earlier runs do not pile up.
    """
    out_dir = tmp_path_factory.mktemp("real_ct")
    yield RealSeries(shared_data, out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)


# --- a tiny LIDC characteristics table and a small synthetic set built from it ------------
#: (noduleID, diameter mm, per reader: the 9 characteristics in LIDC order; [] = no read).
#: Subtlety, internalStructure, calcification, sphericity, margin, lobulation, spiculation,
#: texture, malignancy.
TINY_ROWS: list[tuple[str, float, list[list[int]]]] = [
    ("1", 6.0, [[4, 1, 6, 4, 4, 1, 1, 5, 2]] * 4),  # solid, benign-looking, 4 readers
    (
        "2",
        12.0,
        [[5, 1, 6, 3, 2, 4, 5, 5, 5], [5, 1, 6, 3, 3, 3, 4, 5, 4], [4, 1, 6, 3, 2, 3, 4, 5, 5]],
    ),
    (
        "3",
        9.0,
        [[3, 1, 6, 4, 3, 1, 1, 1, 3], [3, 1, 6, 4, 3, 1, 1, 2, 3], [2, 1, 6, 4, 3, 1, 1, 1, 2]],
    ),
    ("4", 7.0, [[5, 1, 3, 5, 5, 1, 1, 5, 1]] * 3 + [[5, 1, 4, 5, 5, 1, 1, 5, 1]]),  # calcified
    (
        "5",
        10.0,
        [[4, 1, 6, 4, 3, 2, 1, 3, 4], [4, 1, 6, 4, 3, 2, 2, 3, 4], [4, 1, 6, 3, 3, 2, 1, 3, 3]],
    ),
    ("6", 5.0, [[3, 1, 6, 4, 4, 1, 1, 5, 3], [3, 1, 6, 4, 4, 1, 1, 5, 2]]),  # 2 readers: excluded
    ("7", 8.0, [[4, 1, 6, 4, 4, 4, 2, 5, 3]]),  # 1 reader: excluded
    ("8", 2.0, [[4, 1, 6, 4, 4, 1, 1, 5, 1]] * 4),  # < 3 mm: not a template
]


def write_tiny_table(path: Path) -> Path:
    header = ["noduleID", "EquivDiameter", "PixelSpacing"] + [
        f"{name[0].upper()}{name[1:]}_{slot}" for slot in range(1, 5) for name in CHARACTERISTICS
    ]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for nodule_id, diameter, reads in TINY_ROWS:
            # EquivDiameter is in pixels of PixelSpacing mm in the real table.
            row: list[object] = [nodule_id, diameter / 0.5, 0.5]
            for slot in range(4):
                row += reads[slot] if slot < len(reads) else [0] * 9
            writer.writerow(row)
    return path


@pytest.fixture(scope="session")
def tiny_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_table(tmp_path_factory.mktemp("lidc") / "table.csv")


@pytest.fixture(scope="session")
def synth_set(tmp_path_factory: pytest.TempPathFactory, tiny_table: Path) -> Path:
    out = tmp_path_factory.mktemp("synth") / "set"
    generate(small_config(out, tiny_table))
    return out


@pytest.fixture(scope="session")
def app_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    network = NoduleNet(NetworkConfig(width=4, levels=3))
    network.train()
    with torch.no_grad():
        network(torch.rand(4, 1, 16, 16, 16))
    path = tmp_path_factory.mktemp("app_model") / "m"
    save_model(path, network.eval(), APP_SPEC, code_version="test")
    return path


@pytest.fixture(scope="session")
def app_index(synth_set: Path, app_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    index = tmp_path_factory.mktemp("app_index") / "index"
    args = ["build", "--data", str(synth_set), "--model", str(app_model), "--index", str(index)]
    assert nodule_index([*args, "--no-progress", "--workers", "1"]) == 0
    return index


@pytest.fixture(scope="session")
def seg_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model with a mask branch: HU >= -600 (``tests.segmenter``), the app model's spec."""
    path = tmp_path_factory.mktemp("seg_model") / "m"
    save_model(path, threshold_segmenter(APP_SPEC), APP_SPEC, code_version="test")
    return path


@pytest.fixture(scope="session")
def seg_index(synth_set: Path, seg_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic set's catalogue built with ``seg_model``."""
    index = tmp_path_factory.mktemp("seg_index") / "index"
    args = ["build", "--data", str(synth_set), "--model", str(seg_model), "--index", str(index)]
    assert nodule_index([*args, "--no-progress", "--workers", "1"]) == 0
    return index


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """A running Orthanc (DICOMweb) for the session; tests that stop it must start it again."""
    server = Orthanc(tmp_path_factory.mktemp("orthanc"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pacs_lidc(orthanc: Orthanc, real_series: RealSeries) -> tuple[str, str, Path]:
    """LIDC-IDRI-0001 stored in the test PACS: (study UID, series UID, its local folder)."""
    folder = real_series["LIDC-IDRI-0001"]
    study, series = orthanc.store(folder)
    return study, series, folder


@pytest.fixture(scope="session")
def synth_labels(synth_set: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``labels.csv`` of the synthetic set (its simulated readers' ratings)."""
    labels = tmp_path_factory.mktemp("synth_labels") / "labels.csv"
    annotations = str(synth_set / "annotations.csv")
    made = ["labels", "--annotations", annotations, "--synthetic", str(synth_set)]
    assert nodule_index([*made, "--out", str(labels)]) == 0
    return labels


@pytest.fixture(scope="session")
def search_model(
    app_model: Path, synth_set: Path, synth_labels: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The app model with a search space of every block, fitted on the synthetic set."""
    from indexer.search.data import cut_rated, load_rated
    from indexer.search.fit import fit_space
    from model.nn.card import read_card, write_card
    from model.nn.embedder import Embedder

    path = tmp_path_factory.mktemp("search_model") / "m"
    shutil.copytree(app_model, path)
    rated = load_rated(synth_set, synth_labels)
    embedder = Embedder.from_model_dir(path, "cpu")
    cut = cut_rated(rated, embedder.card.preprocessing, 1)
    weights = {"features": 1.0, "size": 1.0, "density": 1.0, "shape": 0.5, "learned": 1.0}
    space = fit_space(
        weights,  # type: ignore[arg-type]
        embedder.embed_patches(cut.patches),
        cut.profiles,
        rated.targets,
        alpha=10.0,
        trained_on="the test's synthetic set",
    )
    write_card(path, read_card(path).with_search(space))
    return path


@pytest.fixture(scope="session")
def search_index(
    synth_set: Path, search_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The synthetic set's catalogue built with ``search_model``."""
    index = tmp_path_factory.mktemp("search_index") / "index"
    args = ["build", "--data", str(synth_set), "--model", str(search_model), "--index", str(index)]
    assert nodule_index([*args, "--no-progress", "--workers", "1"]) == 0
    return index
