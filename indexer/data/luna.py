"""The LUNA16 folder layout, real or synthetic: series files and the annotation tables.

``DIR/subset*/<seriesuid>.mhd`` (plus ``.raw``), ``DIR/annotations.csv`` and
``DIR/candidates_V2.csv`` (or ``candidates.csv``); coordinates are world mm in the ITK/LPS frame.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: The columns of LUNA16's point tables, as written and as read.
POINT_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ")
ANNOTATION_COLUMNS = (*POINT_COLUMNS, "diameter_mm")
CANDIDATE_COLUMNS = (*POINT_COLUMNS, "class")


class LunaLayoutError(ValueError):
    """A LUNA16 folder or table is missing or malformed."""


@dataclass(frozen=True)
class LunaPoint:
    """One row of ``annotations.csv`` or ``candidates*.csv``.

    Attributes:
        series_uid: LUNA16 ``seriesuid``.
        center_xyz: world mm (LPS), LUNA16 ``coordX, coordY, coordZ``.
        diameter_mm: annotation diameter (``None`` for candidates).
        label: candidate class (1 nodule, 0 not) or ``None`` for annotations.
    """

    series_uid: str
    center_xyz: tuple[float, float, float]
    diameter_mm: float | None = None
    label: int | None = None


#: Where a LUNA16-layout folder keeps nodule masks, ``<seriesuid>.mhd`` on the scan's own grid
#: (1 inside a nodule, 0 elsewhere). LUNA16 itself ships none; ``synth`` writes the rendered
#: nodules', ``import-crops`` a crop table's (the LIDC VOI masks). Training uses them where
#: they exist for its segmentation output.
NODULE_MASKS_DIR = "nodule_masks"


def nodule_mask_path(data_dir: Path, series_uid: str) -> Path:
    """The nodule mask of a series (it may not exist)."""
    return data_dir / NODULE_MASKS_DIR / f"{series_uid}.mhd"


def find_series(data_dir: Path) -> dict[str, Path]:
    """Map every ``subset*/<seriesuid>.mhd`` below ``data_dir`` to its path."""
    if not data_dir.is_dir():
        raise LunaLayoutError(f"{data_dir}: not a folder")
    series = {p.stem: p for p in sorted(data_dir.glob("subset*/*.mhd"))}
    if not series:
        raise LunaLayoutError(f"{data_dir}: no subset*/<seriesuid>.mhd files (LUNA16 layout)")
    return series


def _read_points(path: Path, with_diameter: bool) -> list[LunaPoint]:
    if not path.is_file():
        raise LunaLayoutError(f"{path}: not found")
    points = []
    with path.open(newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                center = (float(row["coordX"]), float(row["coordY"]), float(row["coordZ"]))
                extra = float(row["diameter_mm"]) if with_diameter else float(row["class"])
            except (KeyError, TypeError, ValueError):
                raise LunaLayoutError(f"{path.name}:{line}: malformed row") from None
            if not all(math.isfinite(v) for v in (*center, extra)):
                raise LunaLayoutError(f"{path.name}:{line}: non-finite value")
            uid = row["seriesuid"].strip()
            points.append(
                LunaPoint(uid, center, diameter_mm=extra)
                if with_diameter
                else LunaPoint(uid, center, label=int(extra))
            )
    return points


def read_annotations(path: Path) -> list[LunaPoint]:
    """Rows of a LUNA16 ``annotations.csv`` (seriesuid, coordX, coordY, coordZ, diameter_mm)."""
    return _read_points(path, with_diameter=True)


def read_candidates(path: Path) -> list[LunaPoint]:
    """Rows of a LUNA16 ``candidates_V2.csv`` / ``candidates.csv`` (..., class)."""
    return _read_points(path, with_diameter=False)


def candidates_path(data_dir: Path) -> Path:
    """``candidates_V2.csv`` when present (LUNA16's corrected list), else ``candidates.csv``."""
    v2 = data_dir / "candidates_V2.csv"
    return v2 if v2.is_file() else data_dir / "candidates.csv"


def write_annotations(path: Path, points: Iterable[LunaPoint]) -> None:
    """Write an ``annotations.csv`` (or ``annotations_excluded.csv``): one row per point."""
    write_table(
        path, ANNOTATION_COLUMNS, ([p.series_uid, *p.center_xyz, p.diameter_mm] for p in points)
    )


def write_candidates(path: Path, points: Iterable[LunaPoint]) -> None:
    """Write a ``candidates_V2.csv``: one row per point, its ``label`` as the class."""
    write_table(path, CANDIDATE_COLUMNS, ([p.series_uid, *p.center_xyz, p.label] for p in points))


def write_table(path: Path, header: Sequence[str] | None, rows: Iterable[Sequence[object]]) -> None:
    """Write one LUNA16-style table (``header`` None: no header row, as ``seriesuids.csv``)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)
