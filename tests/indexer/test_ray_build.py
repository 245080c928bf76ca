"""``nodule-index build --executor ray`` on a real two-node local Ray cluster.

A head with 1 CPU and a node with 1 CPU and one logical GPU (the embed actor reserves it). Each
build is compared with the local executor's catalogue of the same data and model (``app_index``):
the same ids, rows and vectors.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.cli import main as nodule_index
from model.store.catalog import Catalog
from model.store.layout import IndexLayout
from model.store.tables import Nodule

# The ray extra is part of the dev install (make venv), so CI never skips this; a plain
# `pip install -e .` does not have it.
ray = pytest.importorskip("ray", reason="needs the ray extra: pip install -e '.[ray]'")
from ray.cluster_utils import Cluster  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes.add_node(num_cpus=1, num_gpus=1)
    nodes.wait_for_nodes()
    try:
        yield nodes
    finally:
        if ray.is_initialized():
            ray.shutdown()
        nodes.shutdown()


def _rows(index: Path) -> tuple[list[tuple[Any, ...]], np.ndarray]:
    catalog = Catalog.open(index)
    with catalog.sessions() as session:
        nodules = session.query(Nodule).order_by(Nodule.id).all()
        rows = [
            (
                n.id,
                n.series_uid,
                n.center_xyz,
                n.diameter_mm,
                n.label.label_binary if n.label else None,
            )
            for n in nodules
        ]
        vectors = np.stack([np.asarray(catalog.embeddings[n.embedding_row]) for n in nodules])
    catalog.close()
    return rows, vectors


def _build(cluster: Cluster, data: Path, model: Path, index: Path, *extra: str) -> int:
    args = ["build", "--data", str(data), "--model", str(model), "--index", str(index)]
    args += ["--executor", "ray", "--address", cluster.address, "--device", "cpu"]
    args += ["--gpus-per-actor", "1", "--no-progress", *extra]
    return nodule_index(args)


def _assert_same_catalogue(index: Path, reference: Path) -> None:
    rows, vectors = _rows(index)
    expected_rows, expected_vectors = _rows(reference)
    assert rows == expected_rows
    np.testing.assert_allclose(vectors, expected_vectors, rtol=0, atol=1e-6)


def test_ray_build_equals_the_local_build(
    cluster: Cluster, synth_set: Path, app_model: Path, app_index: Path, tmp_path: Path
) -> None:
    index = tmp_path / "index"
    assert _build(cluster, synth_set, app_model, index) == 0
    _assert_same_catalogue(index, app_index)
    assert not (index / ".work").exists() or not any((index / ".work").iterdir())


def test_a_killed_embed_actor_is_replaced(
    cluster: Cluster,
    synth_set: Path,
    app_model: Path,
    app_index: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    once = tmp_path / "crashed-once"
    monkeypatch.setenv("NODULE_CRASHPOINT", f"embed@{once}")
    index = tmp_path / "index"
    assert _build(cluster, synth_set, app_model, index) == 0
    assert once.exists()  # the actor's process did die mid-run
    _assert_same_catalogue(index, app_index)


def test_a_poisoned_scan_is_reported_and_capped(
    cluster: Cluster,
    synth_set: Path,
    app_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    poisoned = sorted(p.stem for p in synth_set.glob("subset*/*.mhd"))[1]
    monkeypatch.setenv("NODULE_CRASHPOINT", f"crop:{poisoned}")
    strict = tmp_path / "strict"
    code = _build(
        cluster, synth_set, app_model, strict, "--max-retries", "1", "--max-failed-scans", "0"
    )
    assert code == 2
    assert IndexLayout(strict).current() is None  # nothing was published
    assert poisoned not in caplog.text
    index = tmp_path / "index"
    with caplog.at_level(logging.WARNING):
        assert _build(cluster, synth_set, app_model, index, "--max-retries", "1") == 0
    manifest = IndexLayout(index).manifest(IndexLayout(index).current() or "")
    assert [f["series_uid"] for f in manifest["failed_scans"]] == [poisoned]
    assert "crashed" in manifest["failed_scans"][0]["error"]
    rows, _ = _rows(index)
    assert rows
    assert poisoned not in {r[1] for r in rows}
    # Named in the manifest, never in the log (UIDs stay out of logs).
    assert poisoned not in caplog.text
    assert "failed_scans in" in caplog.text


def test_resume_after_the_driver_died_redoes_only_unfinished_scans(
    cluster: Cluster,
    synth_set: Path,
    app_model: Path,
    app_index: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    index = tmp_path / "index"
    once = tmp_path / "driver-died"
    args = ["build", "--data", str(synth_set), "--model", str(app_model), "--index", str(index)]
    args += ["--executor", "ray", "--address", cluster.address, "--device", "cpu"]
    args += ["--gpus-per-actor", "1", "--no-progress"]
    last = sorted(p.stem for p in synth_set.glob("subset*/*.mhd"))[-1]
    env = {
        **os.environ,
        "NODULE_CRASHPOINT": f"driver-result@{once}",  # the driver dies at its first result
        "NODULE_FAILPOINT": f"embed:{last}",  # while the last scan is still being embedded
    }
    died = subprocess.run(
        [sys.executable, "-m", "indexer", *args], env=env, capture_output=True, timeout=120
    )
    assert died.returncode == 70, died.stderr.decode()[-2000:]
    assert IndexLayout(index).current() is None
    finished = list((index / ".work").glob("*/shards/*.parquet"))
    assert finished  # the dead driver's actors had written some scans
    with caplog.at_level(logging.INFO):
        assert _build(cluster, synth_set, app_model, index, "--resume") == 0
    # Actors of the dead driver may finish a scan more before they are stopped, never the last.
    found = re.search(r"resuming: (\d+) of (\d+) scans", caplog.text)
    assert found is not None
    assert len(finished) <= int(found.group(1)) < int(found.group(2))
    assert not (index / ".work").exists() or not any((index / ".work").iterdir())
    _assert_same_catalogue(index, app_index)


def test_local_executor_fails_fast_when_a_reader_kills_its_worker(
    synth_set: Path, app_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    poisoned = sorted(p.stem for p in synth_set.glob("subset*/*.mhd"))[1]
    monkeypatch.setenv("NODULE_CRASHPOINT", f"crop:{poisoned}")
    index = tmp_path / "index"
    args = ["build", "--data", str(synth_set), "--model", str(app_model), "--index", str(index)]
    # Exit 2 (bad input, nothing published) instead of waiting forever on the dead worker.
    assert nodule_index([*args, "--workers", "2", "--no-progress", "--device", "cpu"]) == 2
    assert IndexLayout(index).current() is None
