"""What the lifespan loads and the routes read: typed, built once per process."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from app.access import FailedAttempts
from app.catalogue import CatalogueBrowser, CatalogueRows
from app.privacy import UidHasher
from app.reports import Reporter
from app.retrieval import Retriever
from app.scans import OpenSources, ScanDoor
from app.series import SeriesLocator
from app.settings import AppSettings
from app.slots import Slots
from app.uploads.parser import UploadParser
from model.ct.dicomweb import Pacs
from model.nn.embedder import Embedder
from model.store.catalog import Catalog
from model.store.layout import CATALOGUE_CONTENTS, IndexLayout, LayoutError, holds_catalogue
from model.store.leases import ServingLease

logger = logging.getLogger(__name__)


class CatalogUnavailableError(RuntimeError):
    """The served version vanished from disk and no other can be opened (HTTP 503)."""


class IndexDirError(LayoutError):
    """``NODULE_INDEX_DIR`` names no catalogue to serve (the message says why, in one line)."""


CATALOGUE = "a catalogue folder made by nodule-index build"


def index_dir_problem(index_dir: Path) -> str | None:
    """Why ``index_dir`` cannot be served, one line naming it; None when it has a current version.

    Only the folder's shape and ``CURRENT`` are looked at; the catalogue itself is opened (and
    judged) by ``load_retriever``.
    """
    name = f"NODULE_INDEX_DIR={index_dir}"
    if not index_dir.is_dir():
        reason = "no such folder" if not index_dir.exists() else "not a folder"
        return f"{name}: {reason} (expected {CATALOGUE})"
    if not holds_catalogue(index_dir):
        return (
            f"{name}: holds no catalogue (expected {CATALOGUE}, which holds {CATALOGUE_CONTENTS})"
        )
    try:
        current = IndexLayout(index_dir).current()
    except LayoutError as e:
        return f"NODULE_INDEX_DIR: {e}"
    if current is None:
        return f"{name}: no catalogue version published yet (no CURRENT; run nodule-index build)"
    return None


def log_data_root(data_dir: Path | None) -> None:
    """Log the data root (stored CTs of series the catalogue does not hold); warn when missing.

    A mistyped ``NODULE_DATA_DIR`` would otherwise only show as "series not found" later.
    """
    if data_dir is None:
        logger.info("data root: none (NODULE_DATA_DIR unset); stored CTs are not looked up")
    elif not data_dir.is_dir():
        logger.warning(
            "data root %s (NODULE_DATA_DIR) %s: series the catalogue does not hold cannot be "
            "found there",
            data_dir,
            "is not a folder" if data_dir.exists() else "does not exist",
        )
    else:
        logger.info("data root: %s (NODULE_DATA_DIR)", data_dir)


#: After a failed fall-back, requests answer 503 for this long before trying to load again.
FALLBACK_RETRY_S = 5.0


@dataclass(frozen=True)
class Served:
    """One catalogue version as the service answers from it: search, browsing and reports."""

    retriever: Retriever
    browser: CatalogueBrowser
    reporter: Reporter
    scans: ScanDoor

    @property
    def catalog(self) -> Catalog:
        """The opened catalogue version."""
        return self.retriever.catalog


class Serving:
    """The version being served; ``reload`` swaps it in one assignment.

    A request takes ``served()`` once and keeps it for its whole life, so requests in flight
    during a reload finish on the old version. The old catalogue is not closed by the swap (its
    connections are released when the last request holding it drops it).

    The served version is protected from ``build --keep`` by a lease file (``model.store.leases``).
    Should its folder disappear anyway (removed by hand, a lease-less host), the next request
    falls back to the version ``CURRENT`` names, or gets a 503 when that cannot be opened either.
    """

    def __init__(self, settings: AppSettings) -> None:
        """Open the current version; raises ``IndexDirError`` when there is none to open."""
        log_data_root(settings.data_dir)
        problem = index_dir_problem(settings.index_dir)
        if problem is not None:
            raise IndexDirError(problem)
        self.settings = settings
        # Shared by every version served: where stored CTs lie does not change with the index.
        self.locator = SeriesLocator(settings.data_dir, settings.dicom_rescan_s)
        self.sources = OpenSources(settings.open_volumes)
        pacs = settings.pacs_config()
        self.pacs = Pacs(pacs) if pacs is not None else None
        key = settings.log_hash_key
        self.hash_uid = UidHasher(key.get_secret_value().encode() if key is not None else None)
        self.lease = ServingLease(settings.index_dir)
        self.current = load_served(settings, self.locator, self.sources, self.pacs)
        self.lease.hold(self.current.catalog.version)
        self._lock = threading.Lock()
        self._fallback_failed_at: float | None = None
        self._fallback_error = ""

    def served(self) -> Served:
        """The version to answer a request with (falls back when its version vanished).

        Raises:
            CatalogUnavailableError: the served version is gone and ``CURRENT`` cannot be opened.
        """
        served = self.current
        if served.catalog.present():
            return served
        return self._fall_back(served)

    def _fall_back(self, lost: Served) -> Served:
        with self._lock:
            if self.current is not lost:
                return self.current  # another request already fell back
            failed_at = self._fallback_failed_at
            if failed_at is None or time.monotonic() - failed_at >= FALLBACK_RETRY_S:
                try:
                    fresh = load_served(self.settings, self.locator, self.sources, self.pacs)
                except (OSError, ValueError, RuntimeError) as e:
                    self._fallback_failed_at = time.monotonic()
                    self._fallback_error = str(e)
                else:
                    logger.warning(
                        "catalogue version %s vanished from disk; now serving %s (CURRENT)",
                        lost.catalog.version,
                        fresh.catalog.version,
                    )
                    self._fallback_failed_at = None
                    self._swap(fresh)
                    return fresh
            raise CatalogUnavailableError(
                f"the catalogue version being served ({lost.catalog.version}) was removed from "
                f"disk and no other could be opened: {self._fallback_error}"
            )

    def _swap(self, fresh: Served) -> None:
        self.current = fresh
        self.lease.hold(fresh.catalog.version)

    def reload(self) -> Served:
        """Open the version ``CURRENT`` names now and start serving it."""
        with self._lock:
            fresh = load_served(self.settings, self.locator, self.sources, self.pacs)
            self._swap(fresh)
            return fresh

    def close(self) -> None:
        """Release the lease and the served catalogue's connections."""
        self.lease.release()
        self.current.catalog.close()


class State(TypedDict):
    """Lifespan state (Starlette copies it into every request's ``request.state``)."""

    serving: Serving
    settings: AppSettings
    parser: UploadParser
    failed_attempts: FailedAttempts
    reports: Slots
    """Report (SR, SEG) and size-estimate work in the server process, bounded."""


def load_served(
    settings: AppSettings,
    locator: SeriesLocator | None = None,
    sources: OpenSources | None = None,
    pacs: Pacs | None = None,
) -> Served:
    """Open the current catalogue version and its model (or the configured one)."""
    threads = settings.threads()
    threads.apply()
    catalog = Catalog.open(settings.index_dir, gpu=settings.device != "cpu")
    model_dir = settings.model_dir or catalog.manifest.model_dir_at(settings.index_dir)
    embedder = Embedder.from_model_dir(model_dir, settings.device, batch_size=64)
    scans = ScanDoor(
        catalog,
        locator or SeriesLocator(settings.data_dir, settings.dicom_rescan_s),
        sources or OpenSources(settings.open_volumes),
        pacs,
    )
    rows = CatalogueRows(catalog)
    retriever = Retriever(embedder, rows, scans, settings.max_k, threads=threads)
    threshold = retriever.match_threshold
    logger.info(
        "serving catalogue %s (%s nodules), model %s, ready=%s, match threshold %s",
        catalog.version,
        catalog.manifest.n_nodules,
        embedder.card.fingerprint[:12],
        retriever.ready,
        f"{threshold.value:.4f}" if threshold is not None else "none (version predates it)",
    )
    browser = CatalogueBrowser(rows, scans, embedder)
    return Served(retriever, browser, Reporter(retriever), scans)
