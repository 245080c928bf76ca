"""Arguments of ``nodule-index bootstrap`` (light); it runs in ``indexer.bootstrap.command``."""

from __future__ import annotations

import argparse

from indexer.cli_paths import Kind, add_path
from indexer.data.arguments import LIDC_TABLE


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``bootstrap`` on the CLI."""
    p = sub.add_parser(
        "bootstrap",
        help="build the catalogue if none exists (synthetic by default)",
        description="Make sure a catalogue exists (what the compose indexer runs): with no "
        "INDEX_DIR/CURRENT, or with --rebuild, generate a synthetic set when --data holds no "
        "LUNA16 scans, train the model (or reuse a matching one), build and verify the "
        "catalogue; with one present, do nothing and exit 0.",
    )
    add_path(
        p,
        "--data",
        Kind.OUTPUT_FOLDER,
        required=True,
        help="LUNA16-layout folder (synthetic if empty)",
    )
    add_path(
        p, "--model", Kind.OUTPUT_FOLDER, required=True, help="model folder (trained if missing)"
    )
    add_path(p, "--index", Kind.OUTPUT_FOLDER, required=True, help="INDEX_DIR")
    p.add_argument("--rebuild", action="store_true", help="build a new version even if one exists")
    p.add_argument("--scans", type=int, default=40, help="synthetic scans when generating")
    p.add_argument("--matrix", type=int, default=192, help="synthetic in-plane size")
    p.add_argument("--epochs", type=int, default=10, help="training epochs")
    add_path(
        p,
        "--lidc-table",
        Kind.FILE,
        what=LIDC_TABLE,
        default=None,
        help="LIDC table for the synthetic set",
    )
    p.add_argument(
        "--device",
        default=None,
        help="auto, cpu or cuda (default: $NODULE_DEVICE, else auto)",
    )
