"""The service's one scan door: a series UID (and a study UID) to the CT that is read.

Where a series is looked for, in order (``ScanDoor.address``):

1. the PACS, when the request names the series' study (``study_uid``);
2. the path the catalogue recorded (moved along with the catalogue, ``Manifest.relocated``), or
   the ``dicomweb:`` address it recorded when a PACS is configured;
3. the data root, by name or by DICOM headers (``app.series.SeriesLocator``);
4. the PACS, asked by series UID alone.

Which reader opens the address is ``model.ct.open``'s decision, and only this module calls it.
Opened files and folders are kept at hand (``OpenSources``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from app.errors import InputError, NotFoundError
from app.series import SeriesLocator
from model.ct.dicom import DicomSeriesSource
from model.ct.dicomweb import DicomwebSeriesSource, Pacs
from model.ct.open import open_pacs_series, open_source
from model.ct.pacs import parse_pacs_address
from model.ct.volume import CTVolume, VolumeReadError, VolumeSource
from model.store.catalog import Catalog
from model.store.tables import Scan

#: A series stored as DICOM: its slices' headers can go into a report.
DicomSource = DicomSeriesSource | DicomwebSeriesSource


@dataclass(frozen=True)
class ScanAddress:
    """Where one series is read from: a file or DICOM folder, or the PACS."""

    series_uid: str
    path: Path | None = None
    """A file or DICOM folder; None: the PACS."""
    study_uid: str | None = None
    """The PACS study holding the series; None: the PACS is asked which."""


class ScanDoor:
    """A series UID to its CT: the address decided once (``address``), opened once (``open``)."""

    def __init__(
        self, catalog: Catalog, locator: SeriesLocator, sources: OpenSources, pacs: Pacs | None
    ) -> None:
        self.catalog = catalog
        self.locator = locator
        self.sources = sources
        self.pacs = pacs
        self._recorded: dict[str, Path | None] = {}
        self._lock = threading.Lock()

    def recorded(self, scan: Scan) -> Path:
        """Where the catalogue recorded a scan, moved along with the catalogue if it moved."""
        return self.catalog.manifest.relocated(Path(scan.source_path), self.catalog.index_dir)

    def recorded_path(self, series_uid: str) -> Path | None:
        """Where the catalogue recorded a series (None: not a catalogue scan)."""
        if series_uid in self._recorded:
            return self._recorded[series_uid]
        with self.catalog.sessions() as session:
            scan = session.execute(
                select(Scan).where(Scan.series_uid == series_uid)
            ).scalar_one_or_none()
            path = self.recorded(scan) if scan is not None else None
        if path is not None:  # unknown UIDs are not remembered: they are unbounded
            with self._lock:
                self._recorded[series_uid] = path
        return path

    def address(self, series_uid: str, study_uid: str | None = None) -> ScanAddress:
        """Where ``series_uid`` is read from (the order is the module's docstring's).

        Raises:
            NotFoundError: the series is nowhere to be found.
            InputError: a study UID without a configured PACS.
        """
        if study_uid is not None:
            if self.pacs is None:
                raise InputError(
                    "study_uid names a PACS study, but no PACS is configured (NODULE_DICOMWEB_URL)"
                )
            return ScanAddress(series_uid, study_uid=study_uid)
        path = self.recorded_path(series_uid)
        in_pacs = parse_pacs_address(str(path)) if path is not None else None
        if in_pacs is not None and self.pacs is not None:
            return ScanAddress(in_pacs[1], study_uid=in_pacs[0])
        if path is None or not path.exists():
            path = self.locator.find(series_uid)
        if path is not None:
            return ScanAddress(series_uid, path=path)
        if self.pacs is not None:
            return ScanAddress(series_uid)
        raise NotFoundError(f"series {series_uid} is not a stored CT")

    def open(self, series_uid: str, study_uid: str | None = None) -> VolumeSource:
        """The CT of a series, for region reads.

        Raises:
            NotFoundError: the series is nowhere to be found.
            InputError: a study UID without a configured PACS.
            VolumeReadError: the file or folder cannot be read.
            SeriesNotInPacsError / PacsUnavailableError: from the PACS.
        """
        address = self.address(series_uid, study_uid)
        if address.path is not None:
            folder = address.path.is_dir()
            return self.sources.open(address.path, address.series_uid if folder else None)
        if self.pacs is None:  # address() gives a PACS address only with a PACS
            raise NotFoundError(f"series {series_uid} is not a stored CT")
        return open_pacs_series(self.pacs, address.study_uid, address.series_uid)

    def open_dicom(self, series_uid: str, study_uid: str | None = None) -> DicomSource:
        """The series as DICOM: itself, or the DICOM folder of a series read from an image file.

        Raises:
            InputError: the series is not stored as DICOM (the message says why not).
            NotFoundError: the series is nowhere to be found.
        """
        source = self.open(series_uid, study_uid)
        if isinstance(source, DicomSource):
            return source
        folder = self.locator.find_dicom(series_uid)
        if folder is None:
            raise InputError(self.no_dicom_reason())
        dicom = self.sources.open(folder, series_uid)
        if not isinstance(dicom, DicomSeriesSource):
            raise InputError(self.no_dicom_reason())
        return dicom

    def no_dicom_reason(self) -> str:
        """Why no DICOM folder of a series was found: the data root's state names the cause."""
        root = self.locator.root
        if root is None:
            return (
                "an SR belongs to a DICOM study; this series was read from an image file and no "
                "data root is configured (NODULE_DATA_DIR) to find its DICOM folder in"
            )
        if not root.is_dir():
            return (
                "an SR belongs to a DICOM study; this series was read from an image file and "
                "the data root (NODULE_DATA_DIR) does not exist on the server, so its DICOM "
                "folder cannot be looked for"
            )
        return (
            "an SR belongs to a DICOM study, and this series is stored as an image file "
            "(MetaImage or NIfTI) with no DICOM folder of it under the data root"
        )

    def is_dicom(self, series_uid: str, recorded: Path | None) -> bool:
        """Whether a series is stored as DICOM (a folder, the PACS, or a DICOM folder found).

        ``recorded``: where the catalogue says it lies (relocated), if it says.
        """
        if recorded is not None and (recorded.is_dir() or parse_pacs_address(str(recorded))):
            return True
        return self.locator.find_dicom(series_uid) is not None


def is_dicom_source(source: VolumeSource) -> bool:
    """An opened series that is DICOM (a folder or the PACS)."""
    return isinstance(source, DicomSource)


def from_pacs(source: VolumeSource) -> bool:
    """An opened series read from the PACS."""
    return isinstance(source, DicomwebSeriesSource)


#: Failed opens are answered from memory for this long (seconds), then tried again.
FAILED_OPEN_TTL_S = 30.0
_FAILED_CAPACITY = 1024


class OpenSources:
    """A few opened volumes, kept so repeated queries skip header parsing and DICOM scans.

    Keyed by path and modification time: a file replaced on disk is opened afresh. Sources only
    read, so threads may share one. A path that failed to open is remembered with its error for
    ``FAILED_OPEN_TTL_S``: repeating a bad request does not re-read a folder of headers.
    """

    def __init__(self, capacity: int = 16, failed_ttl_s: float = FAILED_OPEN_TTL_S) -> None:
        self.capacity = capacity
        self.failed_ttl_s = failed_ttl_s
        self._items: OrderedDict[tuple[str, str | None, int], VolumeSource] = OrderedDict()
        self._failed: OrderedDict[tuple[str, str | None, int], tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, path: Path, series_uid: str | None) -> VolumeSource:
        """The opened source of ``path`` (a cached one when the file is unchanged).

        Raises:
            VolumeReadError: the file or series cannot be read (now, or within the last
                ``failed_ttl_s`` seconds).
        """
        key = (str(path), series_uid, path.stat().st_mtime_ns)
        with self._lock:
            source = self._items.get(key)
            if source is not None:
                self._items.move_to_end(key)
                return source
            failed = self._failed.get(key)
            if failed is not None and time.monotonic() - failed[0] < self.failed_ttl_s:
                raise VolumeReadError(failed[1])
        try:
            source = open_source(path, series_uid=series_uid)
        except VolumeReadError as e:
            with self._lock:
                self._failed[key] = (time.monotonic(), str(e))
                self._failed.move_to_end(key)
                while len(self._failed) > _FAILED_CAPACITY:
                    self._failed.popitem(last=False)
            raise
        # Whole volumes in memory (compressed files, NIfTI) are not kept: 16 of them would be
        # gigabytes. Region sources hold a header and a file map.
        if self.capacity > 0 and not isinstance(source, CTVolume):
            with self._lock:
                self._items[key] = source
                while len(self._items) > self.capacity:
                    self._items.popitem(last=False)
        return source
