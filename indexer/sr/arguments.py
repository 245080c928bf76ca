"""Arguments of ``nodule-index report`` (light); it runs in ``indexer.sr.command``."""

from __future__ import annotations

import argparse

from indexer.cli_paths import Kind, add_path
from indexer.data.arguments import parse_center_xyz


def add_report(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``nodule-index report``."""
    p = sub.add_parser(
        "report",
        help="a search at a point of a DICOM series as a DICOM SR file",
        description="A similar-case search at a world point of a DICOM CT series, on the "
        "catalogue's current version and its model, written as a DICOM Comprehensive 3D SR of "
        "that study (the service's POST /v1/reports/sr); --seg-out adds the estimated nodule "
        "mask as a DICOM SEG the SR references.",
    )
    add_path(p, "--index", Kind.CATALOGUE, required=True, help="INDEX_DIR (its current version)")
    add_path(
        p,
        "--series",
        Kind.FOLDER,
        required=True,
        what="a folder of a DICOM CT series",
        help="folder of the DICOM CT series",
    )
    p.add_argument("--series-uid", default=None, help="which series, if the folder holds several")
    p.add_argument(
        "--center", type=parse_center_xyz, required=True, help="X,Y,Z world mm (LPS, as LUNA16)"
    )
    p.add_argument("--k", type=int, default=5, help="neighbours (default 5)")
    p.add_argument(
        "--include-own-patient",
        action="store_true",
        help="also count the queried scan's patient's other nodules (default: a catalogue "
        "scan's patient is left out, as the service does; the nodule at the point never counts)",
    )
    p.add_argument("--device", default=None, help="auto, cpu or cuda (default: $NODULE_DEVICE)")
    add_path(p, "--out", Kind.OUTPUT_FILE, required=True, help="the SR file to write (.dcm)")
    add_path(
        p,
        "--seg-out",
        Kind.OUTPUT_FILE,
        default=None,
        help="also write the estimated nodule mask as a DICOM SEG the SR references (.dcm)",
    )
