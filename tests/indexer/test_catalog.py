"""Catalogue builds: verify, self-search, add, rollback, crash safety, bad inputs."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import AppSettings
from indexer.build.builder import build_lock
from indexer.cli import main
from indexer.data.synth.generate import generate
from model.nn.checkpoint import save_model
from model.nn.network import NetworkConfig, NoduleNet
from model.preprocessing import PatchSpec
from model.store.calibration import (
    MatchThreshold,
    calibrate_match_threshold,
    nearest_other_similarities,
)
from model.store.catalog import Catalog, verify_version
from model.store.layout import IndexLayout, LayoutError
from model.store.manifest import Manifest
from model.store.tables import Label, Nodule, NoduleRead, Scan
from model.store.vector_index import build_index
from tests.helpers.data import small_config

SPEC = PatchSpec(patch_shape_zyx=(16, 16, 16), spacing_mm=2.5)
ROOT = Path(__file__).resolve().parents[2]


def _model(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    network = NoduleNet(NetworkConfig(width=4, levels=3))
    network.train()
    with torch.no_grad():  # non-trivial batch-norm statistics
        network(torch.rand(4, 1, 16, 16, 16))
    save_model(path, network.eval(), SPEC, code_version="test")
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _model(tmp_path_factory.mktemp("model") / "m")


@pytest.fixture(scope="module")
def second_set(tmp_path_factory: pytest.TempPathFactory, tiny_table: Path) -> Path:
    out = tmp_path_factory.mktemp("second") / "set"
    generate(small_config(out, tiny_table, seed=21, scans=2))
    return out


def _build(data: Path, model: Path, index: Path, *extra: str) -> int:
    return main(
        [
            "build",
            "--data",
            str(data),
            "--model",
            str(model),
            "--index",
            str(index),
            "--no-progress",
            *extra,
        ]
    )


def test_build_verifies_and_every_vector_finds_itself(
    synth_set: Path, model_dir: Path, tmp_path: Path
) -> None:
    index = tmp_path / "index"
    assert _build(synth_set, model_dir, index) == 0
    assert main(["verify", "--index", str(index), "--model", str(model_dir)]) == 0
    catalog = Catalog.open(index)
    try:
        vectors = np.asarray(catalog.embeddings, dtype=np.float32)
        with catalog.sessions() as session:
            rows = session.query(Nodule).order_by(Nodule.embedding_row).all()
            labels = session.query(Label).count()
            reads = session.query(NoduleRead).count()
        scores, ids = catalog.search(vectors, 1)
        assert ids[:, 0].tolist() == [r.id for r in rows]
        np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
        annotations = (synth_set / "annotations.csv").read_text().strip().splitlines()[1:]
        assert len(rows) == len(annotations)
        assert labels == len(rows)  # synthetic reads give every nodule a label row
        assert reads >= 3 * len(rows)
        assert catalog.manifest.n_embedded == len(rows)
    finally:
        catalog.close()


def test_rebuild_reuses_vectors_and_ids(synth_set: Path, model_dir: Path, tmp_path: Path) -> None:
    index = tmp_path / "index"
    assert _build(synth_set, model_dir, index) == 0
    first = IndexLayout(index).current()
    assert _build(synth_set, model_dir, index) == 0
    layout = IndexLayout(index)
    second = str(layout.current())
    assert second != first
    assert layout.manifest(second).n_embedded == 0
    assert layout.manifest(second).parent_version == first
    a, b = Catalog.open(index, first), Catalog.open(index, second)
    try:
        np.testing.assert_array_equal(np.asarray(a.embeddings), np.asarray(b.embeddings))
        with a.sessions() as sa, b.sessions() as sb:
            assert [n.id for n in sa.query(Nodule).order_by(Nodule.id)] == [
                n.id for n in sb.query(Nodule).order_by(Nodule.id)
            ]
    finally:
        a.close()
        b.close()


def test_add_new_scans(synth_set: Path, second_set: Path, model_dir: Path, tmp_path: Path) -> None:
    index = tmp_path / "index"
    assert _build(synth_set, model_dir, index) == 0
    layout = IndexLayout(index)
    before = layout.manifest(str(layout.current()))
    assert main(["add", "--data", str(second_set), "--index", str(index), "--no-progress"]) == 0
    after = layout.manifest(layout.current() or "")
    new = len((second_set / "annotations.csv").read_text().strip().splitlines()) - 1
    assert after.n_nodules == before.n_nodules + new
    assert after.n_embedded == new
    assert verify_version(index, after.version) == []
    # Adding the same scans again adds nothing.
    assert main(["add", "--data", str(second_set), "--index", str(index), "--no-progress"]) == 0
    assert layout.manifest(layout.current() or "").n_nodules == after.n_nodules


def test_rollback_and_versions(
    synth_set: Path, second_set: Path, model_dir: Path, tmp_path: Path
) -> None:
    index = tmp_path / "index"
    assert _build(synth_set, model_dir, index) == 0
    first = IndexLayout(index).current()
    assert _build(second_set, model_dir, index) == 0
    assert IndexLayout(index).current() != first
    assert main(["versions", "--index", str(index)]) == 0
    assert main(["rollback", str(first), "--index", str(index)]) == 0
    assert IndexLayout(index).current() == first
    catalog = Catalog.open(index)
    assert catalog.version == first
    catalog.close()
    assert main(["rollback", "20000101T000000000000Z-abcdef", "--index", str(index)]) == 2


def test_keep_prunes_old_versions(synth_set: Path, model_dir: Path, tmp_path: Path) -> None:
    index = tmp_path / "index"
    for _ in range(3):
        assert _build(synth_set, model_dir, index, "--keep", "2") == 0
    layout = IndexLayout(index)
    assert len(layout.versions()) == 2
    assert layout.current() == layout.versions()[-1]


@pytest.mark.parametrize("index_type", ["hnsw", "ivf"])
def test_approximate_index_types(
    synth_set: Path, model_dir: Path, tmp_path: Path, index_type: str
) -> None:
    index = tmp_path / "index"
    assert _build(synth_set, model_dir, index, "--index-type", index_type) == 0
    manifest = IndexLayout(index).manifest(str(IndexLayout(index).current()))
    assert manifest.index_type == index_type
    assert manifest.index_params
    assert main(["verify", "--index", str(index)]) == 0


@pytest.mark.slow
@pytest.mark.parametrize("point", ["embedding", "index-written", "before-switch"])
def test_build_killed_leaves_the_old_version_serving(
    synth_set: Path, second_set: Path, model_dir: Path, tmp_path: Path, point: str
) -> None:
    index = tmp_path / "index"
    assert _build(synth_set, model_dir, index) == 0
    old = IndexLayout(index).current()
    marker = tmp_path / "reached"
    env = {**os.environ, "NODULE_FAILPOINT": point, "NODULE_FAILPOINT_FILE": str(marker)}
    command = [
        sys.executable,
        "-m",
        "indexer",
        "build",
        "--data",
        str(second_set),
        "--model",
        str(model_dir),
        "--index",
        str(index),
        "--no-progress",
        "--workers",
        "1",
    ]
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, "the build ended before reaching the failpoint"
            assert time.monotonic() < deadline, "failpoint not reached in time"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    layout = IndexLayout(index)
    assert layout.current() == old
    assert verify_version(index, old or "") == []
    # The next build succeeds and removes what the killed one left unfinished.
    assert _build(second_set, model_dir, index) == 0
    leftovers = [
        p.name for p in layout.versions_dir.iterdir() if not (p / "manifest.json").is_file()
    ]
    assert leftovers == []
    assert main(["verify", "--index", str(index)]) == 0


def test_data_without_annotations(
    synth_set: Path, model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    shutil.copytree(synth_set, data)
    (data / "annotations.csv").unlink()
    assert _build(data, model_dir, tmp_path / "index") == 2
    assert "no annotations.csv" in caplog.text


def test_add_with_another_model_is_refused(
    synth_set: Path,
    second_set: Path,
    model_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    index = tmp_path / "index"
    assert _build(synth_set, model_dir, index) == 0
    other = _model(tmp_path / "other", seed=5)
    code = main(
        [
            "add",
            "--data",
            str(second_set),
            "--model",
            str(other),
            "--index",
            str(index),
            "--no-progress",
        ]
    )
    assert code == 2
    assert "does not match the index" in caplog.text
    assert main(["verify", "--index", str(index), "--model", str(other)]) == 1


def test_corrupt_scan_fails_or_is_skipped(
    synth_set: Path, model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    shutil.copytree(synth_set, data)
    rows = (data / "annotations.csv").read_text().strip().splitlines()[1:]
    victim = rows[len(rows) // 2].split(",")[0]
    raw = next(data.glob(f"subset*/{victim}.raw"))
    raw.write_bytes(raw.read_bytes()[:1000])  # truncated in the middle of the build
    index = tmp_path / "index"
    assert _build(data, model_dir, index) == 2
    assert "nothing was published" in caplog.text
    layout = IndexLayout(index)
    assert layout.current() is None
    assert layout.versions() == []
    assert _build(data, model_dir, index, "--on-error", "skip") == 0
    manifest = layout.manifest(layout.current() or "")
    assert [f["series_uid"] for f in manifest.failed_scans] == [victim]
    catalog = Catalog.open(index)
    with catalog.sessions() as session:
        assert session.query(Nodule).filter(Nodule.series_uid == victim).count() == 0
    catalog.close()


def test_second_build_waits_for_none(synth_set: Path, model_dir: Path, tmp_path: Path) -> None:
    index = tmp_path / "index"
    with build_lock(index):
        assert _build(synth_set, model_dir, index) == 3


def test_verify_detects_tampering(synth_set: Path, model_dir: Path, tmp_path: Path) -> None:
    index = tmp_path / "index"
    assert _build(synth_set, model_dir, index) == 0
    layout = IndexLayout(index)
    version = layout.current() or ""
    embeddings = layout.version_dir(version) / "embeddings.npy"
    data = bytearray(embeddings.read_bytes())
    data[-1] ^= 0xFF
    embeddings.write_bytes(bytes(data))
    assert main(["verify", "--index", str(index)]) == 1
    problems = verify_version(index, version)
    assert any("checksum" in p for p in problems)
    manifest = json.loads((layout.version_dir(version) / "manifest.json").read_text())
    assert manifest["files"]["embeddings.npy"]


def _nearest_other_patient(vectors: np.ndarray, patients: list[str]) -> np.ndarray:
    """Brute force, independent of FAISS: each row's best cosine to a row of another patient."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = unit @ unit.T
    same = np.array(patients)[:, None] == np.array(patients)[None, :]
    sims[same] = -np.inf
    best: np.ndarray = sims.max(axis=1)
    return best


def test_build_records_the_match_threshold_with_the_version(
    synth_set: Path, model_dir: Path, tmp_path: Path
) -> None:
    index = tmp_path / "index"
    assert _build(synth_set, model_dir, index) == 0
    layout = IndexLayout(index)
    version = layout.current() or ""
    manifest = layout.manifest(version)
    recorded = MatchThreshold.from_manifest(manifest)
    assert recorded is not None
    with (synth_set / "patients.csv").open() as f:
        patient_of = {r["seriesuid"]: r["patient_id"] for r in csv.DictReader(f)}
    catalog = Catalog.open(index)
    try:
        with catalog.sessions() as session:
            rows = session.query(Nodule).order_by(Nodule.embedding_row).all()
            patients = [patient_of[r.series_uid] for r in rows]
        vectors = np.asarray(catalog.embeddings, dtype=np.float64)
        assert catalog.match_threshold is not None
        assert catalog.match_threshold.value == recorded.value
    finally:
        catalog.close()
    best = _nearest_other_patient(vectors, patients)
    assert len(set(patients)) < len(patients)  # some patients have 2 nodules: exclusion matters
    assert recorded.percentile == 5.0
    assert recorded.n_queries == recorded.n_nodules == len(rows)
    assert recorded.value == pytest.approx(np.percentile(best, 5.0), abs=1e-5)
    assert recorded.quantiles["p50"] == pytest.approx(np.median(best), abs=1e-5)
    assert "other-patient" in recorded.rule
    assert verify_version(index, version) == []
    # Approximate indexes are calibrated on themselves too (here they find the same neighbours).
    hnsw = tmp_path / "hnsw"
    assert _build(synth_set, model_dir, hnsw, "--index-type", "hnsw") == 0
    hnsw_manifest = IndexLayout(hnsw).manifest(IndexLayout(hnsw).current() or "")
    assert _threshold(hnsw_manifest).value == pytest.approx(recorded.value, abs=1e-5)


def test_verify_checks_the_threshold_and_old_versions_load_without_one(
    synth_set: Path, model_dir: Path, tmp_path: Path
) -> None:
    index = tmp_path / "index"
    assert _build(synth_set, model_dir, index) == 0
    layout = IndexLayout(index)
    version = layout.current() or ""
    path = layout.version_dir(version) / "manifest.json"
    original = json.loads(path.read_text())
    edited = json.loads(path.read_text())
    edited["match_threshold"]["value"] -= 0.05
    path.write_text(json.dumps(edited))
    problems = verify_version(index, version)
    assert any("not the version's own" in p for p in problems)
    edited["match_threshold"]["value"] = "high"
    path.write_text(json.dumps(edited))
    assert any("match_threshold" in p for p in verify_version(index, version))
    with pytest.raises(LayoutError, match="match_threshold"):
        Catalog.open(index)
    # A version built before thresholds were recorded: it opens, verifies and has none.
    del original["match_threshold"]
    path.write_text(json.dumps(original))
    assert verify_version(index, version) == []
    catalog = Catalog.open(index)
    assert catalog.match_threshold is None
    catalog.close()


def test_calibration_skips_the_patient_samples_large_catalogues_and_needs_enough() -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(20, 16))
    vectors = np.repeat(centers, 3, axis=0) + 0.05 * rng.normal(size=(60, 16))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    ids = np.arange(1000, 1060, dtype=np.int64)
    index = build_index(vectors, ids)
    # Each patient holds three near-copies: without the exclusion everything would be "close".
    patients = [f"p{i // 3}" for i in range(60)]
    sims = nearest_other_similarities(index, vectors, ids, patients)
    np.testing.assert_allclose(sims, _nearest_other_patient(vectors, patients), atol=1e-5)
    by_row = nearest_other_similarities(index, vectors, ids, [f"r{i}" for i in range(60)])
    assert np.all(by_row > sims)
    sampled = calibrate_match_threshold(index, vectors, ids, patients, max_queries=25)
    assert sampled is not None
    assert sampled.n_queries == 25
    assert sampled.n_nodules == 60
    one_patient = calibrate_match_threshold(index, vectors, ids, ["p"] * 60)
    assert one_patient is None  # nobody has a nodule of another patient


def test_index_ids_read_whichever_swig_module_wrapped_the_id_map() -> None:
    # SimpleITK loaded after faiss takes over SWIG's std::vector<int64_t> type: the id map is
    # then SimpleITK's VectorInt64 (no .at()), as in a build that imports the readers late. In a
    # fresh interpreter, so the import order is the one under test.
    code = (
        "import faiss, SimpleITK, numpy as np\n"
        "from model.store.vector_index import index_ids\n"
        "index = faiss.IndexIDMap2(faiss.IndexFlatIP(4))\n"
        "index.add_with_ids(np.eye(4, dtype='float32'), np.array([7, 3, 11, 5]))\n"
        "assert type(index.id_map).__module__.startswith('SimpleITK'), type(index.id_map)\n"
        "assert index_ids(index).tolist() == [7, 3, 11, 5]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_catalogue_moved_with_its_data_and_model_still_finds_them(
    synth_set: Path, model_dir: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    shutil.copytree(synth_set, project / "data")
    shutil.copytree(model_dir, project / "models" / "m")
    assert _build(project / "data", project / "models" / "m", project / "index") == 0
    moved = tmp_path / "moved"
    project.rename(moved)  # every recorded absolute path is gone
    index = moved / "index"
    layout = IndexLayout(index)
    manifest = layout.manifest(layout.current() or "")
    assert not Path(manifest.model_dir).exists()
    assert manifest.model_dir_at(index) == moved / "models" / "m"
    catalog = Catalog.open(index)
    with catalog.sessions() as session:
        nodule = session.query(Nodule).join(Scan).first()
        assert nodule is not None
        recorded, uid, center = nodule.scan.source_path, nodule.series_uid, nodule.center_xyz
    catalog.close()
    assert not Path(recorded).exists()
    assert manifest.relocated(Path(recorded), index).is_file()
    # The service (no data root configured) reads the scan where it moved.
    with TestClient(create_app(AppSettings(index_dir=index, device="cpu"))) as client:
        body = {"series_uid": uid, "center_xyz": list(center), "k": 3}
        answer = client.post("/v1/search/coordinate", json=body)
        assert answer.status_code == 200, answer.text
    # Evaluating re-reads every scan and the model where they are now; add reuses them too.
    report = moved / "report"
    args = ["evaluate", "--index", str(index), "--out", str(report), "--bootstrap", "20"]
    assert main([*args, "--workers", "1", "--quiet"]) == 0
    assert main(["add", "--data", str(moved / "data"), "--index", str(index), "--no-progress"]) == 0


def _threshold(manifest: Manifest) -> MatchThreshold:
    threshold = MatchThreshold.from_manifest(manifest)
    assert threshold is not None
    return threshold
