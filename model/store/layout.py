"""The versioned on-disk layout of a catalogue and its atomic ``CURRENT`` pointer.

::

    INDEX_DIR/CURRENT                          name of the serving version (one line)
    INDEX_DIR/versions/<version>/index.faiss
                                 catalog.sqlite
                                 embeddings.npy    (n, d) float32, row = Nodule.embedding_row
                                 manifest.json     written last: marks a complete version
    INDEX_DIR/leases/<host>-<pid>-<token>.json versions running services hold (never pruned)

A build writes a new version folder and publishes it by replacing ``CURRENT`` (temp file, fsync,
rename, fsync of the folder), so a reader sees either the old or the new version, never a mix,
and a build killed at any moment leaves the previous version current.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from model.store.leases import held_versions
from model.store.manifest import Manifest

CURRENT = "CURRENT"
VERSIONS = "versions"
MANIFEST = "manifest.json"
INDEX_FILE = "index.faiss"
CATALOG_FILE = "catalog.sqlite"
EMBEDDINGS_FILE = "embeddings.npy"
_VERSION_RE = re.compile(r"^[0-9]{8}T[0-9]{12}Z-[0-9a-f]{6}$")


class LayoutError(ValueError):
    """The index folder, a version or the pointer is missing or malformed."""


#: What a catalogue folder holds, for messages about a folder that is not one.
CATALOGUE_CONTENTS = (
    f"{CURRENT} and {VERSIONS}/<version>/ with {MANIFEST}, {INDEX_FILE}, {CATALOG_FILE}, "
    f"{EMBEDDINGS_FILE}"
)


def holds_catalogue(index_dir: Path) -> bool:
    """Whether the folder ``index_dir`` has a catalogue's shape: ``CURRENT`` or ``versions/``.

    Cheap (nothing is read), for a clear "not a catalogue" before anything is opened; whether
    ``CURRENT`` names a sound version is ``IndexLayout.current``'s business.
    """
    return (index_dir / CURRENT).is_file() or (index_dir / VERSIONS).is_dir()


def new_version_name(salt: str) -> str:
    """A sortable, unique version name: UTC time to the microsecond plus a short hash."""
    now = datetime.now(UTC)
    suffix = hashlib.sha256(f"{salt}{os.getpid()}{now.isoformat()}".encode()).hexdigest()[:6]
    # Microseconds keep names in build order (builds of one index never overlap: lock).
    return f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{suffix}"


def fsync_dir(path: Path) -> None:
    """Make a rename or file creation in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON through a fsync'd temp file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    fsync_dir(path.parent)


@dataclass(frozen=True)
class IndexLayout:
    """Paths and pointer operations of one ``INDEX_DIR``."""

    root: Path

    @property
    def versions_dir(self) -> Path:
        """Folder of all version folders."""
        return self.root / VERSIONS

    def version_dir(self, version: str) -> Path:
        """Folder of one version (the name is checked: no path tricks)."""
        if not _VERSION_RE.match(version):
            raise LayoutError(f"not a version name: {version!r}")
        return self.versions_dir / version

    def is_complete(self, version: str) -> bool:
        """A version is complete once its manifest exists."""
        return (self.version_dir(version) / MANIFEST).is_file()

    def versions(self) -> list[str]:
        """Complete versions, oldest first."""
        if not self.versions_dir.is_dir():
            return []
        names = [
            p.name for p in self.versions_dir.iterdir() if p.is_dir() and _VERSION_RE.match(p.name)
        ]
        return sorted(v for v in names if self.is_complete(v))

    def current(self) -> str | None:
        """The version ``CURRENT`` names, or None before the first build."""
        path = self.root / CURRENT
        if not path.is_file():
            return None
        version = path.read_text(encoding="utf-8").strip()
        if not _VERSION_RE.match(version) or not self.is_complete(version):
            raise LayoutError(f"{path} names {version!r}, which is not a complete version")
        return version

    def set_current(self, version: str) -> None:
        """Point ``CURRENT`` at a complete version, atomically."""
        if not self.is_complete(version):
            raise LayoutError(f"version {version} is not complete; refusing to publish it")
        tmp = self.root / f".{CURRENT}.tmp"
        with tmp.open("w", encoding="utf-8") as f:
            f.write(version + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.root / CURRENT)
        fsync_dir(self.root)

    def manifest(self, version: str) -> Manifest:
        """The manifest of a complete version.

        Raises:
            LayoutError: unreadable, or not a manifest (the message names the field).
        """
        path = self.version_dir(version) / MANIFEST
        try:
            return Manifest.model_validate_json(path.read_bytes())
        except OSError as e:
            raise LayoutError(f"{path}: unreadable manifest ({e})") from None
        except ValidationError as e:
            raise LayoutError(f"{path}: not a catalogue manifest ({_first_error(e)})") from None

    def clean_unfinished(self) -> list[str]:
        """Remove version folders without a manifest (builds that died); returns their names."""
        if not self.versions_dir.is_dir():
            return []
        removed = []
        for p in self.versions_dir.iterdir():
            if p.is_dir() and not (p / MANIFEST).is_file():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
        for tmp in self.root.glob(f".{CURRENT}.tmp"):
            tmp.unlink(missing_ok=True)
        return sorted(removed)

    def prune(self, keep: int) -> list[str]:
        """Delete all but the newest ``keep`` complete versions.

        Never the current one, nor one a running service holds (a live lease, see ``leases``).
        """
        current = self.current()
        held = held_versions(self.root)
        versions = self.versions()
        doomed = [
            v for v in versions[: max(0, len(versions) - keep)] if v != current and v not in held
        ]
        for v in doomed:
            shutil.rmtree(self.version_dir(v), ignore_errors=True)
        return doomed


def _first_error(error: ValidationError) -> str:
    """The first thing wrong with a manifest, in one line."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "the file"
    return f"{where}: {first['msg']}"
