"""A tiny LIDC characteristics table (DePaul format) and a small synthetic set built from it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from indexer.synth.generate import SynthConfig, generate
from model.labels import CHARACTERISTICS

#: (noduleID, diameter mm, per reader: the 9 characteristics in LIDC order; [] = no read).
#: Subtlety, internalStructure, calcification, sphericity, margin, lobulation, spiculation,
#: texture, malignancy.
TINY_ROWS: list[tuple[str, float, list[list[int]]]] = [
    ("1", 6.0, [[4, 1, 6, 4, 4, 1, 1, 5, 2]] * 4),  # solid, benign-looking, 4 readers
    (
        "2",
        12.0,
        [[5, 1, 6, 3, 2, 4, 5, 5, 5], [5, 1, 6, 3, 3, 3, 4, 5, 4], [4, 1, 6, 3, 2, 3, 4, 5, 5]],
    ),
    (
        "3",
        9.0,
        [[3, 1, 6, 4, 3, 1, 1, 1, 3], [3, 1, 6, 4, 3, 1, 1, 2, 3], [2, 1, 6, 4, 3, 1, 1, 1, 2]],
    ),
    ("4", 7.0, [[5, 1, 3, 5, 5, 1, 1, 5, 1]] * 3 + [[5, 1, 4, 5, 5, 1, 1, 5, 1]]),  # calcified
    (
        "5",
        10.0,
        [[4, 1, 6, 4, 3, 2, 1, 3, 4], [4, 1, 6, 4, 3, 2, 2, 3, 4], [4, 1, 6, 3, 3, 2, 1, 3, 3]],
    ),
    ("6", 5.0, [[3, 1, 6, 4, 4, 1, 1, 5, 3], [3, 1, 6, 4, 4, 1, 1, 5, 2]]),  # 2 readers: excluded
    ("7", 8.0, [[4, 1, 6, 4, 4, 4, 2, 5, 3]]),  # 1 reader: excluded
    ("8", 2.0, [[4, 1, 6, 4, 4, 1, 1, 5, 1]] * 4),  # < 3 mm: not a template
]


def write_tiny_table(path: Path) -> Path:
    header = ["noduleID", "EquivDiameter", "PixelSpacing"] + [
        f"{name[0].upper()}{name[1:]}_{slot}" for slot in range(1, 5) for name in CHARACTERISTICS
    ]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for nodule_id, diameter, reads in TINY_ROWS:
            # EquivDiameter is in pixels of PixelSpacing mm in the real table.
            row: list[object] = [nodule_id, diameter / 0.5, 0.5]
            for slot in range(4):
                row += reads[slot] if slot < len(reads) else [0] * 9
            writer.writerow(row)
    return path


@pytest.fixture(scope="session")
def tiny_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_table(tmp_path_factory.mktemp("lidc") / "table.csv")


def small_config(out: Path, table: Path, *, seed: int = 3, scans: int = 4) -> SynthConfig:
    return SynthConfig(
        out=out,
        lidc_table=table,
        n_scans=scans,
        seed=seed,
        n_subsets=3,
        matrix=112,
        dicom_scans=1,
        workers=1,
    )


@pytest.fixture(scope="session")
def synth_set(tmp_path_factory: pytest.TempPathFactory, tiny_table: Path) -> Path:
    out = tmp_path_factory.mktemp("synth") / "set"
    generate(small_config(out, tiny_table))
    return out
