"""The reads written by ``nodule-index synth`` (``reads.csv``, world coordinates already)."""

from __future__ import annotations

import csv
from pathlib import Path

from indexer.labels.errors import LabelSourceError
from model.clinical.labels import CHARACTERISTICS, Characteristics, Read, ReadKind

READS_FILE = "reads.csv"


def read_synthetic_reads(data_dir: Path) -> list[Read]:
    """Every read of a synthetic set.

    Raises:
        LabelSourceError: ``reads.csv`` is missing or malformed.
    """
    path = data_dir / READS_FILE
    if not path.is_file():
        raise LabelSourceError(f"{path}: synthetic reads not found (written by nodule-index synth)")
    reads = []
    with path.open(newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                kind = ReadKind(row["kind"])
                center = (float(row["coordX"]), float(row["coordY"]), float(row["coordZ"]))
                characteristics = None
                diameter = None
                if kind is ReadKind.NODULE:
                    characteristics = Characteristics.from_mapping(
                        {name: int(row[name]) for name in CHARACTERISTICS}
                    )
                    diameter = float(row["diameter_mm"])
                reads.append(
                    Read(
                        series_uid=row["seriesuid"],
                        reader_id=row["reader_id"],
                        kind=kind,
                        center_xyz=center,
                        diameter_mm=diameter,
                        characteristics=characteristics,
                        source=f"synthetic:{path.name}:{line}",
                    )
                )
            except (KeyError, ValueError) as e:
                raise LabelSourceError(f"{path.name}:{line}: malformed read ({e})") from None
    return reads
