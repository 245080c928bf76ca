"""What a build indexes: the annotated nodules of a data folder, or those of the current version."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from indexer.build.plan import NoduleEntry, ScanEntry
from indexer.data.luna import LunaLayoutError, find_series, read_annotations
from indexer.labels.build import label_nodules_with_reads, read_labels
from indexer.labels.synthetic_reads import READS_FILE, read_synthetic_reads
from indexer.train.samples import load_patients
from model.clinical.labels import (
    CHARACTERISTICS,
    Characteristics,
    DerivedLabel,
    LabelRule,
    Read,
    ReadKind,
)
from model.ct.geometry import Geometry
from model.ct.pacs import check_uid, pacs_address
from model.ct.volume import VolumeReadError
from model.store.catalog import Catalog
from model.store.manifest import Manifest
from model.store.tables import Nodule, Scan

logger = logging.getLogger(__name__)


def _key(series_uid: str, center_xyz: tuple[float, float, float]) -> tuple[str, tuple[float, ...]]:
    return (series_uid, tuple(round(float(v), 3) for v in center_xyz))


def _attach_labels(nodes: list[NoduleEntry], labels_csv: Path, patients: dict[str, str]) -> None:
    """Put the labels of ``labels.csv`` on the nodules with the same series and centre.

    Patients the file names are added to ``patients`` where unknown.
    """
    by_key = {_key(n.series_uid, n.center_xyz): n for n in read_labels(labels_csv)}
    for node in nodes:
        found = by_key.get(_key(node.series_uid, node.center_xyz))
        if found is not None:
            node.label = found.label
            node.reads = [
                Read(
                    node.series_uid,
                    None,
                    ReadKind.NODULE,
                    node.center_xyz,
                    None,
                    c,
                    f"labels:{labels_csv.name}",
                )
                for c in found.characteristics
            ]
            # Readers' vectors already carry their malignancy; a consensus vector (a crop
            # table's) does not stand for the readers, whose ratings are kept beside it.
            in_reads = sorted(c.malignancy for c in found.characteristics)
            if in_reads != sorted(found.label.ratings):
                node.ratings_only = found.label.ratings
            if found.patient_id:
                patients.setdefault(node.series_uid, found.patient_id)


def collect_data(
    data_dir: Path, labels_csv: Path | None, rule: LabelRule
) -> tuple[dict[str, ScanEntry], list[NoduleEntry]]:
    """Scans and annotated nodules of a LUNA16-layout folder, with labels and reads.

    Labels come from ``labels_csv`` (the ``labels`` command's output) when given, else from the
    reads the folder carries (``reads.csv`` of a synthetic set), else they are left empty.

    Raises:
        LunaLayoutError: no scans or no ``annotations.csv``.
    """
    series = find_series(data_dir)
    annotations_path = data_dir / "annotations.csv"
    if not annotations_path.is_file():
        raise LunaLayoutError(f"{data_dir}: no annotations.csv; nothing to index")
    annotations = read_annotations(annotations_path)
    patients = load_patients(data_dir)
    missing = sorted({a.series_uid for a in annotations} - set(series))
    if missing:
        logger.warning(
            "%d annotated scans are not in %s; their nodules are skipped", len(missing), data_dir
        )
    annotations = [a for a in annotations if a.series_uid in series]
    nodes = [
        NoduleEntry(
            a.series_uid, a.center_xyz, float(a.diameter_mm or 0.0), f"annotations:{data_dir.name}"
        )
        for a in annotations
    ]
    if labels_csv is not None:
        _attach_labels(nodes, labels_csv, patients)
    elif (data_dir / READS_FILE).is_file():
        labels, groups, _ = label_nodules_with_reads(
            annotations, read_synthetic_reads(data_dir), patients, rule
        )
        for node, label, group in zip(nodes, labels, groups, strict=True):
            node.label = label.label
            node.reads = list(group.reads) if group is not None else []
    scans = {uid: ScanEntry(uid, path, patients.get(uid)) for uid, path in series.items()}
    return scans, nodes


def collect_current(
    index_dir: Path,
) -> tuple[dict[str, ScanEntry], list[NoduleEntry], Manifest]:
    """Scans and nodules of the current version (for ``add``), and its manifest."""
    catalog = Catalog.open(index_dir)
    try:
        with catalog.sessions() as session:
            scans = {}
            for s in session.execute(select(Scan)).scalars():
                geometry = Geometry.from_itk(s.origin_xyz, s.spacing_xyz, s.direction, s.size_xyz)
                path = catalog.manifest.relocated(Path(s.source_path), index_dir)
                scans[s.series_uid] = ScanEntry(s.series_uid, path, s.patient_id, geometry)
            nodes = []
            query = select(Nodule).options(selectinload(Nodule.label), selectinload(Nodule.reads))
            for n in session.execute(query.order_by(Nodule.id)).scalars():
                label = None
                if n.label is not None:
                    lab = n.label
                    label = DerivedLabel(
                        lab.n_readers,
                        tuple(lab.ratings),
                        lab.mean_malignancy,
                        lab.label_binary,  # type: ignore[arg-type]
                        lab.label_4class,  # type: ignore[arg-type]
                        None,
                    )
                reads: list[Read] = []
                ratings_only: list[int] = []
                for r in n.reads:
                    values = {
                        k: getattr(r, "internal_structure" if k == "internalStructure" else k)
                        for k in CHARACTERISTICS
                    }
                    if all(v is not None for v in values.values()):
                        characteristics = Characteristics.from_mapping(values)
                        reads.append(
                            Read(
                                n.series_uid,
                                r.reader_id,
                                ReadKind.NODULE,
                                n.center_xyz,
                                None,
                                characteristics,
                                "catalogue",
                            )
                        )
                    elif r.malignancy is not None:
                        ratings_only.append(r.malignancy)
                nodes.append(
                    NoduleEntry(
                        n.series_uid,
                        n.center_xyz,
                        n.diameter_mm,
                        n.source,
                        label,
                        reads,
                        tuple(ratings_only),
                        n.id,
                        None,
                    )
                )
        return scans, nodes, catalog.manifest
    finally:
        catalog.close()


#: Columns of a PACS series list (``build --series-list``); ``patient_id`` is optional.
SERIES_LIST_COLUMNS = ("study_uid", "series_uid", "coordX", "coordY", "coordZ", "diameter_mm")


def collect_pacs(
    series_list: Path, labels_csv: Path | None
) -> tuple[dict[str, ScanEntry], list[NoduleEntry]]:
    """Scans (``dicomweb:`` addresses) and nodules of a CSV listing PACS series and points.

    One row per nodule: ``study_uid, series_uid, coordX, coordY, coordZ`` (world mm, LPS, as
    LUNA16), ``diameter_mm`` and optionally ``patient_id``. Labels come from ``labels_csv``
    (matched on series UID and centre, as for folders).

    Raises:
        LunaLayoutError: the file is missing, lacks a column, or holds a malformed row.
    """
    try:
        with series_list.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in SERIES_LIST_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise LunaLayoutError(f"{series_list}: missing column(s) {', '.join(missing)}")
            rows = list(reader)
    except (OSError, UnicodeDecodeError) as e:
        raise LunaLayoutError(f"{series_list}: cannot be read ({type(e).__name__})") from None
    scans: dict[str, ScanEntry] = {}
    nodes: list[NoduleEntry] = []
    for line, row in enumerate(rows, start=2):
        try:
            study, series = (
                check_uid(row["study_uid"], "study_uid"),
                check_uid(row["series_uid"], "series_uid"),
            )
            center = (float(row["coordX"]), float(row["coordY"]), float(row["coordZ"]))
            diameter = float(row["diameter_mm"] or 0.0)
        except (VolumeReadError, ValueError) as e:
            raise LunaLayoutError(f"{series_list}, line {line}: {e}") from None
        patient = (row.get("patient_id") or "").strip() or None
        scans.setdefault(series, ScanEntry(series, Path(pacs_address(study, series)), patient))
        nodes.append(NoduleEntry(series, center, diameter, f"pacs:{series_list.name}"))
    if not nodes:
        raise LunaLayoutError(f"{series_list}: no rows; nothing to index")
    if labels_csv is not None:
        _attach_labels(nodes, labels_csv, {})
    return scans, nodes
