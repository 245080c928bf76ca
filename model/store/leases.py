"""Leases: which catalogue versions running services hold, so pruning never deletes them.

::

    INDEX_DIR/leases/<host>-<pid>-<token>.json   {"version", "host", "pid", "since"}

A serving process writes one lease file naming the version it serves, rewrites it on reload and
removes it on shutdown. While it runs it touches the file every ``LEASE_REFRESH_S``; a lease not
touched for ``LEASE_TTL_S`` belongs to a process that died without cleaning up (SIGKILL, a lost
container) and no longer protects anything. On the same host a lease whose process is gone is
stale at once. Processes on other hosts (containers sharing the volume) are judged by age alone,
because their process ids mean nothing here.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

LEASES = "leases"
#: Seconds between touches of a held lease.
LEASE_REFRESH_S = 30.0
#: A lease older than this (seconds since its last touch) is a dead process's.
LEASE_TTL_S = 300.0


@dataclass(frozen=True)
class LeaseRecord:
    """One lease file as read back."""

    path: Path
    version: str
    host: str
    pid: int
    age_s: float


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def read_leases(index_dir: Path) -> list[LeaseRecord]:
    """Every readable lease under ``index_dir`` (unreadable files are skipped)."""
    folder = index_dir / LEASES
    if not folder.is_dir():
        return []
    now = time.time()
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            age = now - path.stat().st_mtime
            records.append(
                LeaseRecord(path, str(data["version"]), str(data["host"]), int(data["pid"]), age)
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being replaced or removed right now, or not ours
    return records


def is_live(lease: LeaseRecord, ttl_s: float = LEASE_TTL_S) -> bool:
    """A lease still protects its version: refreshed recently, and its process exists."""
    if lease.age_s > ttl_s:
        return False
    return lease.host != socket.gethostname() or _pid_alive(lease.pid)


def held_versions(index_dir: Path, ttl_s: float = LEASE_TTL_S) -> set[str]:
    """Versions named by live leases; stale lease files are removed on the way."""
    held = set()
    for lease in read_leases(index_dir):
        if is_live(lease, ttl_s):
            held.add(lease.version)
        else:
            lease.path.unlink(missing_ok=True)
    return held


class ServingLease:
    """The lease of this process: names the version it serves, refreshed by a thread."""

    def __init__(self, index_dir: Path, refresh_s: float = LEASE_REFRESH_S) -> None:
        self.folder = index_dir / LEASES
        host = socket.gethostname()
        self.path = self.folder / f"{host}-{os.getpid()}-{secrets.token_hex(4)}.json"
        self._host = host
        self._refresh_s = refresh_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.version: str | None = None

    def hold(self, version: str) -> bool:
        """Write (or rewrite) the lease for ``version``; False when the folder is not writable."""
        record = {"version": version, "host": self._host, "pid": os.getpid(), "since": time.time()}
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(record), encoding="utf-8")
            tmp.replace(self.path)
        except OSError as e:
            # A read-only catalogue mount: no build can prune it from here either.
            logger.warning("cannot write the serving lease (%s): versions are not protected", e)
            return False
        self.version = version
        if self._thread is None:
            self._thread = threading.Thread(target=self._refresh, name="lease", daemon=True)
            self._thread.start()
        return True

    def _refresh(self) -> None:
        while not self._stop.wait(self._refresh_s):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                # Removed by someone (a build that judged it stale): write it again.
                if self.version is not None:
                    self.hold(self.version)
            except OSError as e:
                logger.warning("cannot refresh the serving lease (%s)", e)

    def release(self) -> None:
        """Stop refreshing and remove the lease file."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.path.unlink(missing_ok=True)
