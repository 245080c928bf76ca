"""CT series straight from a PACS over DICOMweb (QIDO-RS, WADO-RS), with region reads.

What is fetched, in order (``dicomweb-client`` over one ``requests`` session):

1. QIDO-RS: the series exists (and which study holds it, when the caller has no study UID);
2. WADO-RS series metadata: the geometry of every slice, the same header rules as files
   (``model.ct.dicom``: sorting along the normal, spacing from positions, refusal of gaps, mixed
   orientations or sizes). Slices whose metadata lacks geometry get their instance metadata, and
   failing that the instance itself, fetched once;
3. WADO-RS frames, only of the slices a patch covers (picked by position along the normal),
   uncompressed (``application/octet-stream``, explicit VR little endian) and without gzip
   (``Accept-Encoding: identity``), turned to HU by RescaleSlope/Intercept.

Series metadata is kept per series in a bounded cache, so repeated queries in one study fetch
only frames. PACS errors become ``SeriesNotInPacsError`` (the series is not there) or
``PacsUnavailableError`` (unreachable, timing out, refusing us); neither message carries a
credential. The client library and urllib3 name study and series UIDs in the URLs they log, so
their loggers are kept at WARNING (logs may hold UIDs only as a keyed hash).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from retrying import RetryError  # type: ignore[import-untyped]

from model.ct.dicom import (
    SeriesLayout,
    SliceHeader,
    evidence_header,
    header_from_dataset,
    layout_series,
)
from model.ct.geometry import Geometry
from model.ct.pacs import (
    PacsConfig,
    PacsUnavailableError,
    SeriesNotInPacsError,
    check_uid,
)
from model.ct.volume import F32Array, VolumeReadError, check_box

logger = logging.getLogger(__name__)
#: Loggers that write request URLs, which name study, series and instance UIDs, at DEBUG level.
URL_LOGGERS = ("dicomweb_client", "urllib3")


def quiet_url_loggers() -> None:
    """Keep the DICOMweb client's and urllib3's URL lines (UIDs) out of the log, even at DEBUG."""
    for name in URL_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


#: Uncompressed frames, explicit VR little endian: what every PACS can send without transcoding
#: cost on our side (Orthanc refuses dicomweb-client's default frame media type).
FRAME_MEDIA_TYPES = (("application/octet-stream", "1.2.840.10008.1.2.1"),)
_PIXEL_TAGS = ("Rows", "Columns", "BitsAllocated", "PixelRepresentation")


@dataclass(frozen=True)
class _Pixels:
    rows: int
    columns: int
    dtype: np.dtype[Any]
    slope: float
    intercept: float


@dataclass(frozen=True)
class SeriesMetadata:
    """A series as the PACS describes it: sorted slices, geometry, how to decode each frame."""

    study_uid: str
    series_uid: str
    layout: SeriesLayout
    pixels: dict[str, _Pixels]
    """By SOP Instance UID."""
    headers: dict[str, Dataset]
    """The identification, patient and study groups of each slice (``evidence_header``), by SOP
    Instance UID: what a report on the series references and copies."""


@dataclass(frozen=True)
class StoredInstance:
    """An instance the PACS accepted, and its WADO-RS URL."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    url: str


class Pacs:
    """A DICOMweb server: QIDO/WADO requests with errors mapped, and the metadata cache."""

    def __init__(self, config: PacsConfig) -> None:
        quiet_url_loggers()  # here, not at import: importing a module changes no logging
        self.config = config
        session = requests.Session()
        if config.token:
            session.headers["Authorization"] = f"Bearer {config.token}"
        elif config.user is not None:
            session.auth = (config.user, config.password or "")
        # Servers gzip single frames unless told otherwise (Orthanc: ~10x slower).
        session.headers["Accept-Encoding"] = "identity"
        self.session = session
        self.client = DICOMwebClient(
            config.url.rstrip("/"), session=session, timeout=config.timeout_s
        )
        self.client.set_http_retry_params(
            retry=config.max_attempts > 1,
            max_attempts=max(1, config.max_attempts),
            wait_exponential_multiplier=config.backoff_ms,
        )
        self._metadata: OrderedDict[tuple[str, str], SeriesMetadata] = OrderedDict()
        self._lock = threading.Lock()
        self.requests = 0
        """Requests sent (for tests and benchmarks: only the needed frames are fetched)."""

    def _call(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.requests += 1
        try:
            return function(*args, **kwargs)
        except RetryError:
            raise PacsUnavailableError(
                f"{what}: the PACS stayed busy after {self.config.max_attempts} attempts"
            ) from None
        except requests.HTTPError as e:
            status = e.response.status_code if e.response is not None else None
            if status == 404:
                raise SeriesNotInPacsError(f"{what}: not found in the PACS") from None
            if status in (401, 403):
                raise PacsUnavailableError(
                    f"{what}: the PACS refused our credentials (HTTP {status})"
                ) from None
            raise PacsUnavailableError(f"{what}: the PACS answered HTTP {status}") from None
        except requests.Timeout:
            raise PacsUnavailableError(
                f"{what}: the PACS did not answer within {self.config.timeout_s:g} s"
            ) from None
        except requests.RequestException as e:
            raise PacsUnavailableError(
                f"{what}: the PACS cannot be reached ({type(e).__name__})"
            ) from None

    def find_study(self, series_uid: str) -> str:
        """The StudyInstanceUID of a series (QIDO-RS), or SeriesNotInPacsError."""
        found = self._call(
            "series search",
            self.client.search_for_series,
            search_filters={"SeriesInstanceUID": series_uid},
            fields=["StudyInstanceUID"],
        )
        for item in found or []:
            values = item.get("0020000D", {}).get("Value", [])
            if values:
                return str(values[0])
        raise SeriesNotInPacsError(f"series {series_uid} is not in the PACS")

    def series(self, study_uid: str | None, series_uid: str) -> SeriesMetadata:
        """The metadata of a series (cached), its slices sorted and checked as for files."""
        check_uid(series_uid, "series_uid")
        if study_uid is not None:
            check_uid(study_uid, "study_uid")
        key_study = study_uid or self.find_study(series_uid)
        key = (key_study, series_uid)
        with self._lock:
            cached = self._metadata.get(key)
            if cached is not None:
                self._metadata.move_to_end(key)
                return cached
        items = self._call(
            f"series {series_uid}",
            self.client.retrieve_series_metadata,
            key_study,
            series_uid,
        )
        if not items:
            raise SeriesNotInPacsError(f"series {series_uid} is not in the PACS")
        metadata = self._parse(key_study, series_uid, items)
        with self._lock:
            self._metadata[key] = metadata
            while len(self._metadata) > self.config.metadata_cache:
                self._metadata.popitem(last=False)
        return metadata

    def _dataset(self, item: dict[str, Any]) -> Dataset:
        # Bulk data (pixels, large private blobs) is never fetched for metadata.
        return Dataset.from_json(item, bulk_data_uri_handler=lambda *_: b"")

    def _complete(self, study_uid: str, series_uid: str, ds: Dataset) -> Dataset:
        """Fill geometry the series metadata left out from the instance (metadata, then file)."""
        sop = str(ds.get("SOPInstanceUID", ""))
        needed = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", *_PIXEL_TAGS)
        if not sop or all(tag in ds for tag in needed):
            return ds
        what = f"instance {sop}"
        items = self._call(what, self.client.retrieve_instance_metadata, study_uid, series_uid, sop)
        fuller = self._dataset(items) if isinstance(items, dict) else ds
        if all(tag in fuller for tag in needed):
            return fuller
        instance: Dataset = self._call(
            what, self.client.retrieve_instance, study_uid, series_uid, sop
        )
        if "PixelData" in instance:
            del instance.PixelData  # only the header is needed here
        return instance

    def _parse(
        self, study_uid: str, series_uid: str, items: list[dict[str, Any]]
    ) -> SeriesMetadata:
        name = f"series {series_uid}"
        headers: list[SliceHeader] = []
        pixels: dict[str, _Pixels] = {}
        evidence: dict[str, Dataset] = {}
        for item in items:
            ds = self._complete(study_uid, series_uid, self._dataset(item))
            sop = str(ds.get("SOPInstanceUID", ""))
            header = header_from_dataset(ds, Path(sop or "unknown-instance"))
            if header is None or header.is_localizer or header.series_uid != series_uid:
                continue
            bits, signed = int(ds.get("BitsAllocated", 16)), int(ds.get("PixelRepresentation", 0))
            if bits not in (8, 16, 32):
                raise VolumeReadError(f"{name}: {bits} bits per pixel are not supported")
            dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
            pixels[sop] = _Pixels(
                rows=header.rows,
                columns=header.columns,
                dtype=dtype,
                slope=float(ds.get("RescaleSlope", 1.0) or 1.0),
                intercept=float(ds.get("RescaleIntercept", 0.0) or 0.0),
            )
            headers.append(header)
            evidence[sop] = evidence_header(ds)
        if not any(h.modality == "CT" for h in headers):
            raise VolumeReadError(f"{name} is not a CT image series")
        layout = layout_series(headers, name)
        return SeriesMetadata(study_uid, series_uid, layout, pixels, evidence)

    def store(self, instances: Sequence[Dataset]) -> list[StoredInstance]:
        """Store instances of one study with STOW-RS; where each now lies (WADO-RS URLs).

        Raises:
            PacsUnavailableError: the PACS refused them (its status is named) or cannot be reached.
        """
        study_uid = str(instances[0].StudyInstanceUID)
        answer: Dataset = self._call(
            "storing a report", self.client.store_instances, list(instances), study_uid
        )
        failed = answer.get("FailedSOPSequence") or []
        if failed:
            reason = failed[0].get("FailureReason")
            raise PacsUnavailableError(
                f"the PACS refused to store {len(failed)} of {len(instances)} instances "
                f"(failure reason {reason})"
            )
        root = self.config.url.rstrip("/")
        return [
            StoredInstance(
                study_uid=study_uid,
                series_uid=str(ds.SeriesInstanceUID),
                sop_instance_uid=str(ds.SOPInstanceUID),
                url=f"{root}/studies/{study_uid}/series/{ds.SeriesInstanceUID}"
                f"/instances/{ds.SOPInstanceUID}",
            )
            for ds in instances
        ]

    def frame_hu(self, metadata: SeriesMetadata, header: SliceHeader) -> F32Array:
        """One slice in HU (WADO-RS frame 1, uncompressed), (rows, columns) float32."""
        sop = header.path.name
        frames = self._call(
            f"instance {sop}",
            self.client.retrieve_instance_frames,
            metadata.study_uid,
            metadata.series_uid,
            sop,
            frame_numbers=[1],
            media_types=FRAME_MEDIA_TYPES,
        )
        info = metadata.pixels[sop]
        data = frames[0] if frames else b""
        expected = info.rows * info.columns * info.dtype.itemsize
        if len(data) < expected:
            raise VolumeReadError(
                f"instance {sop}: the PACS sent {len(data)} bytes for a {info.columns}x"
                f"{info.rows} frame of {expected} bytes"
            )
        stored = np.frombuffer(data[:expected], dtype=info.dtype).reshape(info.rows, info.columns)
        hu = stored.astype(np.float32) * np.float32(info.slope) + np.float32(info.intercept)
        if not np.all(np.isfinite(hu)):
            raise VolumeReadError(f"instance {sop}: pixel data contains NaN or infinity")
        return hu


class DicomwebSeriesSource:
    """A CT series in a PACS as a region source: ``read_box`` fetches only its slices' frames."""

    def __init__(self, pacs: Pacs, study_uid: str | None, series_uid: str) -> None:
        self.pacs = pacs
        self.metadata = pacs.series(study_uid, series_uid)
        self.series_uid = series_uid

    @property
    def geometry(self) -> Geometry:
        """Geometry of the whole series (from the PACS metadata)."""
        return self.metadata.layout.geometry

    def slice_headers(self, start_z: int, stop_z: int) -> list[Dataset]:
        """The headers of slices ``start_z <= k < stop_z`` (clipped), from the series metadata.

        Only the groups a report copies (``model.ct.dicom.evidence_header``); nothing is fetched.
        """
        chosen = self.metadata.layout.headers[max(0, start_z) : max(0, stop_z)]
        return [self.metadata.headers[h.path.name] for h in chosen]

    def read_box(self, start_zyx: Sequence[int], stop_zyx: Sequence[int]) -> F32Array:
        """HU float32 of voxels ``start_zyx <= index < stop_zyx``, fetching only those slices."""
        check_box(self.geometry, start_zyx, stop_zyx)
        (z0, y0, x0), (z1, y1, x1) = (int(v) for v in start_zyx), (int(v) for v in stop_zyx)
        out = np.empty((z1 - z0, y1 - y0, x1 - x0), dtype=np.float32)
        headers = self.metadata.layout.headers[z0:z1]
        workers = max(1, min(self.pacs.config.parallel_frames, len(headers)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            slices = pool.map(lambda h: self.pacs.frame_hu(self.metadata, h), headers)
            for k, hu in enumerate(slices):
                out[k] = hu[y0:y1, x0:x1]
        return out
