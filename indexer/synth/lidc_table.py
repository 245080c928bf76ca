"""Real LIDC reader characteristics to drive the synthetic nodules.

The synthetic nodules take their readers' ratings from the DePaul MedIX LIDC table
(``lidc_maxslice/LIDC_20130817_AllFeatures2D_MaxSlicePerNodule_inLineRatings.csv``): one row per
physical LIDC nodule with the 9 characteristics of each of its (up to 4) readers and the 2-D
max-slice outline. Drawing whole rows keeps the real joint distribution of diameter, texture,
calcification, spiculation, malignancy and reader disagreement; the phantom then renders a nodule
whose appearance follows the readers' consensus.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from model.labels import CHARACTERISTICS, Characteristics

TABLE_NAME = "LIDC_20130817_AllFeatures2D_MaxSlicePerNodule_inLineRatings.csv"

#: LUNA16 keeps nodules >= 3 mm; the phantom renders up to 30 mm (LIDC's upper bound).
MIN_DIAMETER_MM = 3.0
MAX_DIAMETER_MM = 30.0


class LidcTableError(ValueError):
    """The LIDC characteristics table is missing or malformed."""


@dataclass(frozen=True)
class ReaderRatings:
    """One radiologist's 9 characteristics of one nodule, with the table's reader slot."""

    reader: int
    """Reader slot 1..4 of the source row (LIDC reader identities are not global)."""
    ratings: Characteristics


@dataclass(frozen=True)
class NoduleProfile:
    """A real LIDC nodule's size and reads, the template of one synthetic nodule."""

    source_id: str
    """``noduleID`` of the DePaul row (traceability)."""
    diameter_mm: float
    """Equivalent diameter of the max-area outline (EquivDiameter x PixelSpacing)."""
    readers: tuple[ReaderRatings, ...]

    def consensus(self, name: str) -> float:
        """Median of the readers' ratings of one characteristic."""
        values = sorted(getattr(r.ratings, name) for r in self.readers)
        mid = len(values) // 2
        return float(values[mid]) if len(values) % 2 else (values[mid - 1] + values[mid]) / 2.0


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
