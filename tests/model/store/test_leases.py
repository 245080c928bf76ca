"""Leases: live ones protect their version from pruning, stale ones are cleared."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from model.store.layout import MANIFEST, IndexLayout
from model.store.leases import LEASE_TTL_S, ServingLease, held_versions

VERSIONS = [f"2026120{d}T000000000000Z-abcdef" for d in range(1, 5)]


def _layout(tmp_path: Path) -> IndexLayout:
    layout = IndexLayout(tmp_path / "index")
    for version in VERSIONS:
        folder = layout.version_dir(version)
        folder.mkdir(parents=True)
        (folder / MANIFEST).write_text("{}", encoding="utf-8")
    layout.set_current(VERSIONS[-1])
    return layout


def _write_lease(layout: IndexLayout, name: str, version: str, host: str, pid: int) -> Path:
    folder = layout.root / "leases"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"version": version, "host": host, "pid": pid, "since": 0}))
    return path


def test_prune_keeps_versions_held_by_a_live_lease(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    lease = ServingLease(layout.root, refresh_s=3600)
    assert lease.hold(VERSIONS[0])
    assert held_versions(layout.root) == {VERSIONS[0]}
    assert layout.prune(keep=1) == VERSIONS[1:3]
    assert layout.versions() == [VERSIONS[0], VERSIONS[-1]]
    lease.release()
    assert held_versions(layout.root) == set()
    assert layout.prune(keep=1) == [VERSIONS[0]]


def test_leases_of_dead_processes_and_old_leases_protect_nothing(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = _write_lease(layout, "dead", VERSIONS[0], socket.gethostname(), int(done.stdout))
    old = _write_lease(layout, "old", VERSIONS[1], "another-host", 1)
    past = time.time() - LEASE_TTL_S - 10
    os.utime(old, (past, past))
    live_elsewhere = _write_lease(layout, "elsewhere", VERSIONS[2], "another-host", 1)
    assert held_versions(layout.root) == {VERSIONS[2]}
    assert not dead.exists()
    assert not old.exists()
    assert live_elsewhere.exists()


def test_a_lease_removed_under_a_service_is_written_again(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    lease = ServingLease(layout.root, refresh_s=0.05)
    lease.hold(VERSIONS[0])
    lease.path.unlink()
    deadline = time.monotonic() + 5
    while not lease.path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert held_versions(layout.root) == {VERSIONS[0]}
    lease.release()


def test_an_unwritable_index_folder_does_not_stop_serving(tmp_path: Path) -> None:
    blocked = tmp_path / "index"
    blocked.mkdir()
    (blocked / "leases").write_text("not a folder")
    assert not ServingLease(blocked).hold(VERSIONS[0])
