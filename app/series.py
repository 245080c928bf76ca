"""Stored CTs by series UID: where they lie under the data root (the scan door asks here).

Series the catalogue holds are read from the path it recorded. Others are looked up under
``NODULE_DATA_DIR``: first by name (``<uid>.mhd``/``.mha``/``.nii(.gz)``, ``subset*/<uid>.mhd``
as in LUNA16, or a folder named ``<uid>``), then through an index of DICOM headers built by
walking the root. That index is built on the first miss and rebuilt on a later miss only when it
is older than ``rescan_interval_s``, so a flood of unknown UIDs cannot make the service walk the
disk on every request.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from model.ct.dicom import read_series_uid

logger = logging.getLogger(__name__)

#: Suffixes that are never DICOM images: skipped without opening them.
_NOT_DICOM = (
    ".mhd",
    ".raw",
    ".zraw",
    ".mha",
    ".nii",
    ".gz",
    ".csv",
    ".json",
    ".txt",
    ".xml",
    ".npy",
    ".npz",
    ".zip",
    ".png",
    ".pt",
)
_BY_NAME = (".mhd", ".mha", ".nii.gz", ".nii")


class SeriesLocator:
    """Finds a stored CT under a data root by its series UID."""

    def __init__(
        self, root: Path | None, rescan_interval_s: float = 60.0, max_files: int = 500_000
    ) -> None:
        self.root = root
        self.rescan_interval_s = rescan_interval_s
        self.max_files = max_files
        self._dicom: dict[str, Path] = {}
        self._scanned_at: float | None = None
        self._lock = threading.Lock()

    def find(self, series_uid: str) -> Path | None:
        """The file or DICOM folder of ``series_uid`` under the root, or None."""
        if self.root is None or not self.root.is_dir() or not _plausible_uid(series_uid):
            return None
        by_name = self._by_name(series_uid)
        if by_name is not None:
            return by_name
        with self._lock:
            found = self._dicom.get(series_uid)
            if found is not None and found.is_dir():
                return found
            stale = (
                self._scanned_at is None
                or time.monotonic() - self._scanned_at >= self.rescan_interval_s
            )
            if stale:
                self._dicom = self._scan_dicom(self.root)
                self._scanned_at = time.monotonic()
            return self._dicom.get(series_uid)

    def find_dicom(self, series_uid: str) -> Path | None:
        """The DICOM folder of ``series_uid`` under the root (not a file of it), or None."""
        if self.root is None or not self.root.is_dir() or not _plausible_uid(series_uid):
            return None
        folder = self.root / series_uid
        if _dicom_uid(series_uid) and folder.is_dir():
            return folder
        with self._lock:
            if self._scanned_at is None:
                self._dicom = self._scan_dicom(self.root)
                self._scanned_at = time.monotonic()
            return self._dicom.get(series_uid)

    def _by_name(self, series_uid: str) -> Path | None:
        assert self.root is not None
        for suffix in _BY_NAME:
            candidate = self.root / f"{series_uid}{suffix}"
            if candidate.is_file():
                return candidate
        # A folder is a series only under a DICOM UID's name (digits and dots): any other name
        # ("subset0") would make every request re-read that folder's headers, and its answer
        # would tell which folders exist.
        folder = self.root / series_uid
        if _dicom_uid(series_uid) and folder.is_dir():
            return folder
        return next(iter(sorted(self.root.glob(f"subset*/{series_uid}.mhd"))), None)

    def _scan_dicom(self, root: Path) -> dict[str, Path]:
        """Series UID -> the deepest folder holding all of that series' files."""
        started = time.monotonic()
        folders: dict[str, set[str]] = {}
        seen = 0
        visited: set[str] = set()
        # Data roots are often assembled from symlinks; following them needs a guard on loops.
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            visited.add(os.path.realpath(dirpath))
            dirnames[:] = sorted(
                d for d in dirnames if os.path.realpath(os.path.join(dirpath, d)) not in visited
            )
            for name in sorted(filenames):
                if name.lower().endswith(_NOT_DICOM) or name.startswith("."):
                    continue
                seen += 1
                if seen > self.max_files:
                    logger.warning(
                        "DICOM lookup stopped after %d files under the data root", self.max_files
                    )
                    return _deepest_common(folders)
                uid = read_series_uid(Path(dirpath) / name)
                if uid is not None:
                    folders.setdefault(uid, set()).add(dirpath)
        found = _deepest_common(folders)
        logger.info(
            "DICOM lookup: %d series in %d files under the data root (%.1f s)",
            len(found),
            seen,
            time.monotonic() - started,
        )
        return found


def _deepest_common(folders: dict[str, set[str]]) -> dict[str, Path]:
    return {uid: Path(os.path.commonpath(sorted(dirs))) for uid, dirs in folders.items()}


def _plausible_uid(series_uid: str) -> bool:
    # DICOM UIDs are digits and dots; other stores name scans with letters, "_" or "-". Nothing
    # else (slashes, a leading dot, "..") may become part of a path.
    return (
        0 < len(series_uid) <= 128
        and not series_uid.startswith(".")
        and all(c.isascii() and (c.isalnum() or c in "._-") for c in series_uid)
    )


def _dicom_uid(name: str) -> bool:
    return 0 < len(name) <= 64 and all(c.isdigit() or c == "." for c in name)
