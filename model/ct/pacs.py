"""Where a PACS is, how a catalogue names a series it holds, and what can go wrong there.

Light on purpose (no DICOMweb client, no pydicom): the settings of every program, the OHIF
server included, build a ``PacsConfig`` without importing the client (``model.ct.dicomweb``).
"""

from __future__ import annotations

from dataclasses import dataclass

from model.ct.volume import VolumeReadError

#: How a catalogue records a scan read from a PACS: ``dicomweb:<study UID>/<series UID>``.
ADDRESS_PREFIX = "dicomweb:"


def pacs_address(study_uid: str, series_uid: str) -> str:
    """The catalogue's ``source_path`` of a series held by a PACS."""
    return f"{ADDRESS_PREFIX}{study_uid}/{series_uid}"


def parse_pacs_address(text: str) -> tuple[str, str] | None:
    """(study UID, series UID) of a ``dicomweb:`` address, or None for file paths."""
    if not text.startswith(ADDRESS_PREFIX):
        return None
    study, _, series = text[len(ADDRESS_PREFIX) :].partition("/")
    return (study, series) if study and series else None


class PacsError(RuntimeError):
    """A DICOMweb request that did not give what was asked for."""


class SeriesNotInPacsError(PacsError, KeyError):
    """The PACS does not hold the series (or not in that study)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "series not in the PACS"


class PacsUnavailableError(PacsError):
    """The PACS cannot be reached, timed out, or refused the request (e.g. credentials)."""


@dataclass(frozen=True)
class PacsConfig:
    """Where the PACS is and how to talk to it.

    Attributes:
        url: the DICOMweb root, e.g. ``http://pacs:8042/dicom-web``.
        user / password: HTTP basic authentication (or ``token`` for a bearer token).
        timeout_s: per-request (connect, read) timeout in seconds.
        max_attempts: tries per request on 429/503/504 answers (exponential back-off from
            ``backoff_ms``); connection errors and timeouts are not retried.
        metadata_cache: series whose metadata is kept.
        parallel_frames: frame requests of one read in flight at once.
    """

    url: str
    user: str | None = None
    password: str | None = None
    token: str | None = None
    timeout_s: float = 10.0
    max_attempts: int = 2
    backoff_ms: int = 200
    metadata_cache: int = 32
    parallel_frames: int = 4
    """Frame requests in flight at once for one patch (a PACS answers them concurrently)."""

    def __repr__(self) -> str:
        # Never print a credential, even by accident in a traceback or a log line.
        return f"PacsConfig(url={self.url!r}, timeout_s={self.timeout_s}, ...)"


def check_uid(uid: str, what: str) -> str:
    """A DICOM UID (digits and dots, at most 64 characters) or VolumeReadError (a 422)."""
    if not (0 < len(uid) <= 64 and all(c.isdigit() or c == "." for c in uid)):
        raise VolumeReadError(f"{what} {uid[:80]!r} is not a DICOM UID (digits and dots, <= 64)")
    return uid
