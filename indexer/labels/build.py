"""``nodule-index labels``: LUNA16 annotations + LIDC reads -> one labelled row per nodule."""

from __future__ import annotations

import csv
import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from indexer.data.luna import LunaPoint
from indexer.labels.errors import LabelSourceError
from indexer.labels.grouping import Mark, ReadGroup, group_reads, match_annotations
from model.clinical.labels import (
    CHARACTERISTICS,
    CHARACTERISTICS_COLUMN,
    LABELS_CSV_COLUMNS,
    Characteristics,
    DerivedLabel,
    LabelRule,
    NoduleLabel,
    Read,
    derive_label,
)

logger = logging.getLogger(__name__)


@dataclass
class LabelCounts:
    """What ``labels`` prints: how many nodules end up where."""

    nodules: int = 0
    matched: int = 0
    unmatched: int = 0
    at_least_min_readers: int = 0
    kept: int = 0
    benign: int = 0
    malignant: int = 0
    four_class: dict[int, int] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)


def label_nodules(
    annotations: Sequence[LunaPoint],
    reads: Sequence[Mark | Read],
    patients: dict[str, str],
    rule: LabelRule,
) -> tuple[list[NoduleLabel], LabelCounts]:
    """Group reads into nodules, match LUNA16 annotations, derive each nodule's labels."""
    labels, _, counts = label_nodules_with_reads(annotations, reads, patients, rule)
    return labels, counts


def label_nodules_with_reads(
    annotations: Sequence[LunaPoint],
    reads: Sequence[Mark | Read],
    patients: dict[str, str],
    rule: LabelRule,
) -> tuple[list[NoduleLabel], list[ReadGroup | None], LabelCounts]:
    """As ``label_nodules``, also returning each annotation's matched read group (or None)."""
    groups = group_reads(reads)
    matched = match_annotations(annotations, groups)
    labels = []
    counts = LabelCounts(nodules=len(annotations))
    excluded: Counter[str] = Counter()
    four: Counter[int] = Counter()
    for annotation, group in zip(annotations, matched, strict=True):
        ratings = group.malignancy_ratings if group is not None else []
        derived = derive_label(ratings, rule)
        if group is None:
            counts.unmatched += 1
        else:
            counts.matched += 1
        if derived.n_readers >= rule.min_readers:
            counts.at_least_min_readers += 1
        if derived.label_binary is None:
            excluded[derived.excluded_reason or "unlabelled"] += 1
        else:
            counts.kept += 1
            counts.benign += derived.label_binary == 0
            counts.malignant += derived.label_binary == 1
            four[int(derived.label_4class or 0)] += 1
        labels.append(
            NoduleLabel(
                series_uid=annotation.series_uid,
                patient_id=patients.get(annotation.series_uid),
                center_xyz=annotation.center_xyz,
                diameter_mm=float(annotation.diameter_mm or 0.0),
                label=derived,
                characteristics=_reader_characteristics(group),
            )
        )
    counts.four_class = dict(sorted(four.items()))
    counts.excluded = dict(sorted(excluded.items()))
    return labels, matched, counts


def _reader_characteristics(group: ReadGroup | None) -> tuple[Characteristics, ...]:
    """The 9 ratings of each reader of a matched group who gave them."""
    if group is None:
        return ()
    return tuple(r.characteristics for r in group.reads if r.characteristics)


def characteristics_json(values: Sequence[Characteristics]) -> str:
    """The ``characteristics`` cell: a JSON list of 9-rating lists (``CHARACTERISTICS`` order)."""
    return json.dumps([[getattr(c, name) for name in CHARACTERISTICS] for c in values])


def parse_characteristics(text: str) -> tuple[Characteristics, ...]:
    """The inverse of ``characteristics_json`` (an empty cell: none).

    Raises:
        ValueError: not a list of 9-integer lists on the LIDC scales.
    """
    if not text.strip():
        return ()
    rows = json.loads(text)
    if not isinstance(rows, list) or any(
        not isinstance(r, list) or len(r) != len(CHARACTERISTICS) for r in rows
    ):
        raise ValueError("characteristics must be a list of 9-rating lists")
    return tuple(
        Characteristics.from_mapping(dict(zip(CHARACTERISTICS, r, strict=True))) for r in rows
    )


def _fmt(value: float | int | None) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def write_labels(path: Path, labels: Sequence[NoduleLabel]) -> None:
    """Write ``labels.csv`` (columns ``LABELS_CSV_COLUMNS``; ratings as a JSON list)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow((*LABELS_CSV_COLUMNS, CHARACTERISTICS_COLUMN))
        for n in labels:
            d = n.label
            writer.writerow(
                [
                    n.series_uid,
                    n.patient_id or "",
                    *(f"{v:.6f}" for v in n.center_xyz),
                    f"{n.diameter_mm:.6f}",
                    d.n_readers,
                    json.dumps(list(d.ratings)),
                    _fmt(d.mean_malignancy),
                    _fmt(d.label_binary),
                    _fmt(d.label_4class),
                    characteristics_json(n.characteristics) if n.characteristics else "",
                ]
            )
    tmp.replace(path)


def read_labels(path: Path) -> list[NoduleLabel]:
    """Read a ``labels.csv`` written by ``write_labels``.

    Raises:
        LabelSourceError: missing file, missing columns or malformed values.
    """
    if not path.is_file():
        raise LabelSourceError(f"{path}: labels file not found")
    out = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in LABELS_CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise LabelSourceError(f"{path.name}: missing columns {missing}")
        for line, row in enumerate(reader, start=2):
            try:
                ratings = tuple(int(r) for r in json.loads(row["ratings"]))
                mean = float(row["mean_malignancy"]) if row["mean_malignancy"] else None
                binary = int(row["label_binary"]) if row["label_binary"] else None
                four = int(row["label_4class"]) if row["label_4class"] else None
                center = (float(row["coordX"]), float(row["coordY"]), float(row["coordZ"]))
                diameter = float(row["diameter_mm"])
                characteristics = parse_characteristics(row.get(CHARACTERISTICS_COLUMN) or "")
            except (ValueError, TypeError, json.JSONDecodeError):
                raise LabelSourceError(f"{path.name}:{line}: malformed row") from None
            if binary not in (None, 0, 1) or four not in (None, 1, 2, 4, 5):
                raise LabelSourceError(f"{path.name}:{line}: label out of range")
            if not all(math.isfinite(v) for v in (*center, diameter)):
                raise LabelSourceError(f"{path.name}:{line}: non-finite coordinate")
            derived = DerivedLabel(
                n_readers=int(row["n_readers"]),
                ratings=ratings,
                mean_malignancy=mean,
                label_binary=binary,  # type: ignore[arg-type]
                label_4class=four,  # type: ignore[arg-type]
                excluded_reason=None,
            )
            out.append(
                NoduleLabel(
                    row["seriesuid"],
                    row["patient_id"] or None,
                    center,
                    diameter,
                    derived,
                    characteristics,
                )
            )
    return out


def log_counts(counts: LabelCounts, rule: LabelRule) -> None:
    """Log the counts table ``labels`` prints."""
    logger.info(
        "labels: %d LUNA16 nodules, %d matched to reads (%d unmatched), %d with >= %d readers, "
        "%d kept after excluding 3 (rule %s): %d benign / %d malignant; 4-class %s; excluded %s",
        counts.nodules,
        counts.matched,
        counts.unmatched,
        counts.at_least_min_readers,
        rule.min_readers,
        counts.kept,
        rule.exclude_three.value,
        counts.benign,
        counts.malignant,
        counts.four_class,
        counts.excluded,
    )
