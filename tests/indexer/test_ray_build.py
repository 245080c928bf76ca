"""``nodule-index build --executor ray`` on a real two-node local Ray cluster.

A head with 1 CPU and a node with 1 CPU and one logical GPU (the embed actor reserves it). Each
build is compared with the local executor's catalogue of the same data and model (``app_index``):
the same ids, rows and vectors.

Every build runs as its own ``python -m indexer`` process, as an operator runs it: a Ray driver
whose raylet goes away exits its process at once (status 1, nothing on stderr), and that must
fail one test with the cluster's own logs, not end the whole pytest session.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.cli import main as nodule_index
from indexer.failpoints import CRASH_STATUS
from model.store.catalog import Catalog
from model.store.layout import IndexLayout
from model.store.tables import Nodule

# The ray extra is part of the dev install (make venv), so CI never skips this; a plain
# `pip install -e .` does not have it.
pytest.importorskip("ray", reason="needs the ray extra: pip install -e '.[ray]'")

pytestmark = pytest.mark.slow


# The cluster lives in a process of its own: Ray's nodes install a SIGTERM handler (drain, kill
# the node, sys.exit(1)) in the process that starts them, and pytest, or a worker it forks,
# must not inherit it. The helper prints the address and session folder, and stops its nodes
# when its stdin closes.
_CLUSTER_PROCESS = """
import sys
from ray.cluster_utils import Cluster
nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
nodes.add_node(num_cpus=1, num_gpus=1)
nodes.wait_for_nodes()
print("cluster", nodes.address, nodes.head_node.get_session_dir_path(), flush=True)
sys.stdin.read()
nodes.shutdown()
"""


@dataclass(frozen=True)
class Cluster:
    """A running two-node local Ray cluster."""

    address: str
    session_dir: Path


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    helper = subprocess.Popen(
        [sys.executable, "-c", _CLUSTER_PROCESS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert helper.stdin is not None
    assert helper.stdout is not None
    try:
        # Ray may print its own lines first; ours starts with "cluster".
        line: list[str] = []
        while not line or line[0] != "cluster":
            text = helper.stdout.readline()
            assert text, f"the Ray cluster did not start (exit {helper.poll()})"
            line = text.split()
        yield Cluster(address=line[1], session_dir=Path(line[2]))
    finally:
        helper.stdin.close()
        try:
            helper.wait(timeout=60)
        except subprocess.TimeoutExpired:
            helper.kill()
            helper.wait()
        helper.stdout.close()


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


@dataclass(frozen=True)
class Run:
    """One finished ``nodule-index build`` process."""

    code: int
    log: str


def _cluster_logs(cluster: Cluster) -> str:
    """The tails of the cluster's own logs (raylets, GCS): why a driver lost its cluster."""
    session = cluster.session_dir / "logs"
    tails = []
    for name in ("raylet.out", "raylet.err", "gcs_server.out", "gcs_server.err"):
        for path in sorted(session.glob(name.replace(".", "*."))):
            text = path.read_text(encoding="utf-8", errors="replace")[-1500:]
            tails.append(f"--- {path.name}\n{text}")
    return "\n".join(tails)


def _build(cluster: Cluster, data: Path, model: Path, index: Path, *extra: str, **env: str) -> Run:
    """Run a Ray build of ``data`` into ``index``; ``env``: extra environment (failpoints)."""
    args = ["build", "--data", str(data), "--model", str(model), "--index", str(index)]
    args += ["--executor", "ray", "--address", cluster.address, "--device", "cpu"]
    args += ["--gpus-per-actor", "1", "--no-progress", *extra]
    done = subprocess.run(
        [sys.executable, "-m", "indexer", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    run = Run(code=done.returncode, log=done.stderr)
    if run.code not in (0, 2, CRASH_STATUS):  # neither success, a refused build, nor a failpoint
        pytest.fail(
            f"the build process exited {run.code}:\n{run.log[-3000:]}\n{_cluster_logs(cluster)}"
        )
    return run


def _assert_same_catalogue(index: Path, reference: Path) -> None:
    rows, vectors = _rows(index)
    expected_rows, expected_vectors = _rows(reference)
    assert rows == expected_rows
    np.testing.assert_allclose(vectors, expected_vectors, rtol=0, atol=1e-6)


def test_ray_build_equals_the_local_build(
    cluster: Cluster, synth_set: Path, app_model: Path, app_index: Path, tmp_path: Path
) -> None:
    index = tmp_path / "index"
    assert _build(cluster, synth_set, app_model, index).code == 0
    _assert_same_catalogue(index, app_index)
    assert not (index / ".work").exists() or not any((index / ".work").iterdir())


def test_a_killed_embed_actor_is_replaced(
    cluster: Cluster, synth_set: Path, app_model: Path, app_index: Path, tmp_path: Path
) -> None:
    once = tmp_path / "crashed-once"
    index = tmp_path / "index"
    run = _build(cluster, synth_set, app_model, index, NODULE_CRASHPOINT=f"embed@{once}")
    assert run.code == 0, run.log[-2000:]
    assert once.exists()  # the actor's process did die mid-run
    _assert_same_catalogue(index, app_index)


def test_a_poisoned_scan_is_reported_and_capped(
    cluster: Cluster, synth_set: Path, app_model: Path, tmp_path: Path
) -> None:
    poisoned = sorted(p.stem for p in synth_set.glob("subset*/*.mhd"))[1]
    crash = {"NODULE_CRASHPOINT": f"crop:{poisoned}"}
    strict = tmp_path / "strict"
    capped = ("--max-retries", "1", "--max-failed-scans", "0")
    refused = _build(cluster, synth_set, app_model, strict, *capped, **crash)
    assert refused.code == 2, refused.log[-2000:]
    assert IndexLayout(strict).current() is None  # nothing was published
    assert poisoned not in refused.log
    index = tmp_path / "index"
    run = _build(cluster, synth_set, app_model, index, "--max-retries", "1", **crash)
    assert run.code == 0, run.log[-2000:]
    manifest = IndexLayout(index).manifest(IndexLayout(index).current() or "")
    assert [f["series_uid"] for f in manifest.failed_scans] == [poisoned]
    assert "crashed" in manifest.failed_scans[0]["error"]
    rows, _ = _rows(index)
    assert rows
    assert poisoned not in {r[1] for r in rows}
    # Named in the manifest, never in the log (UIDs stay out of logs).
    assert poisoned not in run.log
    assert "failed_scans in" in run.log


def test_resume_after_the_driver_died_redoes_only_unfinished_scans(
    cluster: Cluster, synth_set: Path, app_model: Path, app_index: Path, tmp_path: Path
) -> None:
    index = tmp_path / "index"
    once = tmp_path / "driver-died"
    last = sorted(p.stem for p in synth_set.glob("subset*/*.mhd"))[-1]
    died = _build(
        cluster,
        synth_set,
        app_model,
        index,
        NODULE_CRASHPOINT=f"driver-result@{once}",  # the driver dies at its first result
        NODULE_FAILPOINT=f"embed:{last}",  # while the last scan is still being embedded
    )
    assert died.code == CRASH_STATUS, died.log[-2000:]
    assert IndexLayout(index).current() is None
    finished = list((index / ".work").glob("*/shards/*.parquet"))
    assert finished  # the dead driver's actors had written some scans
    resumed = _build(cluster, synth_set, app_model, index, "--resume")
    assert resumed.code == 0, resumed.log[-2000:]
    # Actors of the dead driver may finish a scan more before they are stopped, never the last.
    found = re.search(r"resuming: (\d+) of (\d+) scans", resumed.log)
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
