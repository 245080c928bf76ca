"""Reading a CT series from a folder of DICOM files with pydicom.

Rules (see docs/protocol.md): the CT series is picked when a folder holds several series; slices
are sorted by ImagePositionPatient projected on the slice normal (the cross product of the two
ImageOrientationPatient cosines), never by InstanceNumber, file name or SliceLocation; the slice
spacing comes from position differences, never SliceThickness; stored values become HU through
the modality LUT (RescaleSlope/Intercept). Series with missing slices, duplicate positions, mixed
orientation, mixed pixel spacing or mixed image sizes are refused with a message naming which.

Only headers are read up front; pixel data of a slice is decoded when a box needs it, so a patch
reads only the slices it covers. No patient identifier is ever logged or put in a message.
"""

from __future__ import annotations

import copy
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels.processing import apply_modality_lut

from model.ct.evidence import COPIED, EVIDENCE_KEYWORDS, ReportHeaderError
from model.ct.geometry import Geometry, GeometryError, check_ct_spacing
from model.ct.itk import MAX_DIM, MAX_VOXELS
from model.ct.volume import CTVolume, F32Array, VolumeReadError, VolumeSource, check_box

logger = logging.getLogger(__name__)

#: Largest number of files scanned in one folder (a CT series has at most a few thousand).
MAX_FILES = 20_000
#: Orientation cosines that differ by more than this are a different orientation.
_ORIENTATION_TOL = 1e-4
#: A slice step may differ from the median step by this fraction before the series is refused.
_SPACING_REL_TOL = 0.1
#: ImageType values of scout/localizer images, which are never the CT volume.
_LOCALIZER_TYPES = {"LOCALIZER", "SCOUT"}


#: Header groups a report's evidence needs: identification, patient, acquisition, study/series/
#: frame of reference, image pixel description (rows, columns, spacing) -- all but pixel data.
_EVIDENCE_GROUPS = (0x0008, 0x0010, 0x0018, 0x0020, 0x0028)


#: Value representations of binary data (LUTs, private blobs): never part of a report's evidence.
_BINARY_VRS = ("OB", "OD", "OF", "OL", "OV", "OW", "UN")


#: The longest value a report's evidence keeps (characters). What a report copies or checks is
#: far shorter (LO and UI 64, PN 5 x 64); longer text (UC, UT, LT) is dropped, so untrusted
#: headers stay small on their way to the server.
MAX_EVIDENCE_VALUE_CHARS = 1024


def evidence_header(ds: Dataset) -> Dataset:
    """The groups of a slice header a report referencing it copies, bounded.

    No pixels, no binary data, no sequences (nothing a report copies is one, and a sequence may
    nest any data), no value longer than ``MAX_EVIDENCE_VALUE_CHARS``.

    Raises:
        ReportHeaderError: an attribute a report copies or checks is that long (named, no value).
    """
    out = Dataset()
    for element in ds:
        if element.tag.group not in _EVIDENCE_GROUPS or element.VR in (*_BINARY_VRS, "SQ"):
            continue
        if len(str(element.value)) > MAX_EVIDENCE_VALUE_CHARS:
            if element.keyword in EVIDENCE_KEYWORDS:
                raise ReportHeaderError(
                    f"{element.keyword} of a queried slice is longer than DICOM allows"
                )
            continue
        out.add(element)
    return out


#: Type 2 attributes (present, may be empty) of the patient and study modules a derived object (SR,
#: SEG) copies from its sources; some writers leave them out, which the SR must not inherit.
_TYPE2_COPIED = COPIED


def with_copied_type2(header: Dataset) -> Dataset:
    """A copy of a slice header with the copied type 2 attributes present (empty if absent)."""
    out = copy.copy(header)
    for keyword in _TYPE2_COPIED:
        if keyword not in out:
            setattr(out, keyword, "")
    return out


class SliceHeaders(Protocol):
    """The geometry of a DICOM series and its slices' headers (what a report references)."""

    @property
    def geometry(self) -> Geometry:
        """Geometry of the whole series."""
        ...

    def slice_headers(self, start_z: int, stop_z: int) -> list[Dataset]:
        """The headers of slices ``start_z <= k < stop_z`` (clipped), sorted along the normal."""
        ...


class HeaderSource(VolumeSource, SliceHeaders, Protocol):
    """A DICOM series: region reads and its slice headers (a folder, or a PACS's metadata)."""


@dataclass(frozen=True)
class HeaderSnapshot:
    """Some slice headers of a series, kept by slice index (what an upload's parser sends back).

    ``slice_headers`` gives those of the asked range that it holds.
    """

    geometry: Geometry
    headers: dict[int, Dataset]

    def slice_headers(self, start_z: int, stop_z: int) -> list[Dataset]:
        """The held headers of slices ``start_z <= k < stop_z``, in slice order."""
        return [self.headers[k] for k in range(max(0, start_z), stop_z) if k in self.headers]


@dataclass(frozen=True)
class SliceHeader:
    """The geometry-relevant header fields of one DICOM image file (no patient data)."""

    path: Path
    """The file, or for slices of a DICOMweb server the SOP Instance UID (as a name)."""
    series_uid: str
    modality: str
    is_localizer: bool
    rows: int
    columns: int
    orientation: tuple[float, ...]
    position_xyz: tuple[float, float, float]
    pixel_spacing_rc: tuple[float, float]
    """(row spacing = between rows = along y, column spacing = along x), in mm."""


def _floats(ds: Dataset, keyword: str, count: int, path: Path) -> tuple[float, ...]:
    value = ds.get(keyword)
    try:
        numbers = tuple(float(v) for v in value) if value is not None else ()
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) != count or not np.all(np.isfinite(numbers)):
        raise VolumeReadError(f"{path.name}: {keyword} is missing or malformed")
    return numbers


def read_series_uid(path: Path) -> str | None:
    """SeriesInstanceUID of a DICOM file (that one tag of its header), or None for anything else."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
    except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, KeyError):
        return None
    uid = ds.get("SeriesInstanceUID")
    return str(uid) if uid else None


def _read_header(path: Path) -> SliceHeader | None:
    """Header of one image file, or None for files that are not DICOM images."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, KeyError):
        return None
    return header_from_dataset(ds, path)


def header_from_dataset(ds: Dataset, path: Path) -> SliceHeader | None:
    """The slice header of a parsed dataset (a file's, or DICOMweb metadata).

    None when it is not an image; ``path`` names the slice in messages (a file, or a SOP
    Instance UID).

    Raises:
        VolumeReadError: a CT image without position/orientation, or malformed spacing.
    """
    if "SeriesInstanceUID" not in ds or "Rows" not in ds or "Columns" not in ds:
        return None  # DICOMDIR, structured reports, presentation states, ...
    image_type = {str(v).upper() for v in ds.get("ImageType", [])}
    modality = str(ds.get("Modality", ""))
    series_uid = str(ds.SeriesInstanceUID)
    if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
        if modality == "CT" and not image_type & _LOCALIZER_TYPES:
            raise VolumeReadError(f"{path.name}: CT image without ImagePositionPatient/Orientation")
        return None
    spacing = _floats(ds, "PixelSpacing", 2, path)
    return SliceHeader(
        path=path,
        series_uid=series_uid,
        modality=modality,
        is_localizer=bool(image_type & _LOCALIZER_TYPES),
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        orientation=_floats(ds, "ImageOrientationPatient", 6, path),
        position_xyz=_floats(ds, "ImagePositionPatient", 3, path),  # type: ignore[arg-type]
        pixel_spacing_rc=(spacing[0], spacing[1]),
    )


def scan_folder(folder: Path) -> dict[str, list[SliceHeader]]:
    """Headers of every DICOM image below ``folder``, grouped by SeriesInstanceUID."""
    if not folder.is_dir():
        raise VolumeReadError(f"{folder.name}: not a folder")
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    if len(files) > MAX_FILES:
        raise VolumeReadError(f"{folder.name}: {len(files)} files, more than {MAX_FILES}")
    series: dict[str, list[SliceHeader]] = defaultdict(list)
    for path in files:
        header = _read_header(path)
        if header is not None:
            series[header.series_uid].append(header)
    return dict(series)


def pick_ct_series(series: dict[str, list[SliceHeader]], folder_name: str) -> list[SliceHeader]:
    """The one CT series of a folder (localizers dropped); refuse none or several."""
    ct = {
        uid: [h for h in headers if not h.is_localizer]
        for uid, headers in series.items()
        if any(h.modality == "CT" for h in headers)
    }
    ct = {uid: headers for uid, headers in ct.items() if headers}
    if not ct:
        found = sorted({h.modality or "?" for hs in series.values() for h in hs})
        raise VolumeReadError(
            f"{folder_name}: no CT image series found"
            + (f" (modalities present: {', '.join(found)})" if found else " (no DICOM images)")
        )
    if len(ct) > 1:
        listing = ", ".join(f"{uid} ({len(h)} slices)" for uid, h in sorted(ct.items()))
        raise VolumeReadError(
            f"{folder_name}: {len(ct)} CT series in one folder, name one (series_uid) of: {listing}"
        )
    return next(iter(ct.values()))


def _describe(values: Iterable[object]) -> str:
    return ", ".join(f"{v} x{n}" for v, n in Counter(values).most_common())


def _check_consistent(headers: Sequence[SliceHeader], name: str) -> None:
    sizes = {(h.rows, h.columns) for h in headers}
    if len(sizes) > 1:
        raise VolumeReadError(
            f"{name}: mixed image sizes (rows x columns): "
            + _describe(f"{h.rows}x{h.columns}" for h in headers)
        )
    ref = np.asarray(headers[0].orientation)
    odd = [h for h in headers if not np.allclose(h.orientation, ref, atol=_ORIENTATION_TOL)]
    if odd:
        raise VolumeReadError(
            f"{name}: mixed orientations: {len(odd)} of {len(headers)} slices differ from "
            f"{[round(v, 4) for v in ref]} (e.g. {odd[0].path.name})"
        )
    spacings = {tuple(round(v, 4) for v in h.pixel_spacing_rc) for h in headers}
    if len(spacings) > 1:
        raise VolumeReadError(f"{name}: mixed pixel spacings: {sorted(spacings)}")


@dataclass(frozen=True)
class SeriesLayout:
    """The slices of a series sorted along the normal, and the volume geometry they make."""

    headers: list[SliceHeader]
    geometry: Geometry


def layout_series(headers: list[SliceHeader], name: str) -> SeriesLayout:
    """Sort the slices along the normal and derive the geometry; refuse gaps and mixtures."""
    if len(headers) < 2:
        raise VolumeReadError(f"{name}: a CT volume needs at least 2 slices, found {len(headers)}")
    _check_consistent(headers, name)
    row_cos = np.asarray(headers[0].orientation[:3])
    col_cos = np.asarray(headers[0].orientation[3:])
    normal = np.cross(row_cos, col_cos)
    order = sorted(headers, key=lambda h: float(np.dot(normal, h.position_xyz)))
    along = np.array([float(np.dot(normal, h.position_xyz)) for h in order])
    steps = np.diff(along)
    if np.any(steps < 1e-3):
        i = int(np.argmin(steps))
        raise VolumeReadError(
            f"{name}: duplicate slice position {along[i]:.3f} mm along the normal "
            f"({order[i].path.name}, {order[i + 1].path.name})"
        )
    step = float(np.median(steps))
    bad = np.flatnonzero(np.abs(steps - step) > _SPACING_REL_TOL * step)
    if bad.size:
        i = int(bad[0])
        missing = round(steps[i] / step) - 1
        what = f"about {missing} missing slice(s)" if missing >= 1 else "irregular slice spacing"
        raise VolumeReadError(
            f"{name}: gap in the series: {what} between positions {along[i]:.2f} and "
            f"{along[i + 1]:.2f} mm (step {steps[i]:.2f} mm, expected {step:.2f} mm)"
        )
    # Off-normal drift of positions means a sheared (gantry-tilted) stack we do not model.
    first = np.asarray(order[0].position_xyz)
    expected = first + np.outer(along - along[0], normal)
    drift = np.abs(np.asarray([h.position_xyz for h in order]) - expected).max()
    if drift > 0.1 * step + 1e-3:
        raise VolumeReadError(f"{name}: slice positions are not along the normal (gantry tilt?)")
    rows, columns = headers[0].rows, headers[0].columns
    if max(rows, columns, len(order)) > MAX_DIM or rows * columns * len(order) > MAX_VOXELS:
        raise VolumeReadError(f"{name}: series size {columns}x{rows}x{len(order)} is too large")
    row_spacing, col_spacing = headers[0].pixel_spacing_rc
    direction = np.column_stack([row_cos, col_cos, normal]).reshape(-1)
    try:
        geometry = Geometry.from_itk(
            origin_xyz=first,
            spacing_xyz=(col_spacing, row_spacing, step),
            direction=direction.tolist(),
            size_xyz=(columns, rows, len(order)),
        )
        check_ct_spacing(geometry.spacing_xyz)
    except GeometryError as e:
        raise VolumeReadError(f"{name}: {e}") from None
    return SeriesLayout(headers=order, geometry=geometry)


class DicomSeriesSource:
    """A CT series in a folder; reads (and caches nothing of) only the slices a box covers."""

    def __init__(self, folder: Path, series_uid: str | None = None) -> None:
        self.folder = folder
        series = scan_folder(folder)
        if series_uid is not None:
            if series_uid not in series:
                raise VolumeReadError(f"{folder.name}: series {series_uid} not found in the folder")
            headers = [h for h in series[series_uid] if not h.is_localizer]
            if not any(h.modality == "CT" for h in headers):
                raise VolumeReadError(f"{folder.name}: series {series_uid} is not a CT series")
        else:
            headers = pick_ct_series(series, folder.name)
        self._layout = layout_series(headers, folder.name)
        self.series_uid = headers[0].series_uid

    @property
    def geometry(self) -> Geometry:
        """Geometry of the whole series."""
        return self._layout.geometry

    def _slice_hu(self, header: SliceHeader) -> F32Array:
        try:
            ds = pydicom.dcmread(header.path)
            stored = ds.pixel_array
            hu = np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
        except (
            InvalidDicomError,
            OSError,
            EOFError,
            ValueError,
            TypeError,
            AttributeError,
            RuntimeError,
            NotImplementedError,
        ) as e:
            raise VolumeReadError(
                f"{header.path.name}: pixel data cannot be decoded ({type(e).__name__})"
            ) from None
        if hu.shape != (header.rows, header.columns):
            raise VolumeReadError(f"{header.path.name}: pixel data shape {hu.shape} != header")
        if not np.all(np.isfinite(hu)):
            raise VolumeReadError(f"{header.path.name}: pixel data contains NaN or infinity")
        return hu

    def slice_headers(self, start_z: int, stop_z: int) -> list[Dataset]:
        """The DICOM headers (no pixels) of slices ``start_z <= k < stop_z`` (clipped).

        Raises:
            VolumeReadError: a slice's file can no longer be read.
        """
        chosen = self._layout.headers[max(0, start_z) : max(0, stop_z)]
        try:
            return [pydicom.dcmread(h.path, stop_before_pixels=True) for h in chosen]
        except (InvalidDicomError, OSError, EOFError, ValueError) as e:
            raise VolumeReadError(f"a slice header cannot be read ({type(e).__name__})") from None

    def read_box(self, start_zyx: Sequence[int], stop_zyx: Sequence[int]) -> F32Array:
        """HU float32 of voxels ``start_zyx <= index < stop_zyx``, decoding only those slices."""
        check_box(self.geometry, start_zyx, stop_zyx)
        (z0, y0, x0), (z1, y1, x1) = (int(v) for v in start_zyx), (int(v) for v in stop_zyx)
        out = np.empty((z1 - z0, y1 - y0, x1 - x0), dtype=np.float32)
        for k, header in enumerate(self._layout.headers[z0:z1]):
            out[k] = self._slice_hu(header)[y0:y1, x0:x1]
        return out


def load_dicom_series(folder: Path, series_uid: str | None = None) -> CTVolume:
    """Read a whole CT series from a folder as HU float32 (slices, rows, columns) in LPS."""
    source = DicomSeriesSource(folder, series_uid)
    hu = source.read_box((0, 0, 0), source.geometry.shape_zyx)
    # Not the folder's name: DICOM folders are named by UIDs or patient ids.
    logger.debug("read a DICOM series of %d slices", hu.shape[0])
    return CTVolume(hu_zyx=hu, geometry=source.geometry, series_uid=source.series_uid)
