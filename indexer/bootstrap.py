"""``nodule-index bootstrap``: make sure a catalogue exists (what the compose ``indexer`` runs).

With no ``INDEX_DIR/CURRENT`` (or with ``--rebuild``): generate the synthetic set when the data
folder holds no LUNA16 scans, train the model (or reuse a matching one), build and verify the
catalogue. With a catalogue present and no ``--rebuild`` it does nothing and exits 0.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence

from indexer.arguments import LIDC_TABLE
from indexer.cli_paths import Kind, add_path
from model.store.layout import CURRENT

logger = logging.getLogger(__name__)


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


def run(args: argparse.Namespace, main: Callable[[Sequence[str]], int]) -> int:
    """Run the steps through the CLI's own ``main`` so each behaves exactly as on its own."""
    if (args.index / CURRENT).is_file() and not args.rebuild:
        logger.info(
            "a catalogue exists in %s; nothing to do (use --rebuild for a new version)", args.index
        )
        return 0
    steps: list[list[str]] = []
    if not any(args.data.glob("subset*/*.mhd")):
        synth = [
            "synth",
            "--out",
            str(args.data),
            "--scans",
            str(args.scans),
            "--matrix",
            str(args.matrix),
        ]
        if (args.data / "synth.json").is_file():
            synth.append("--overwrite")
        if args.lidc_table is not None:
            synth += ["--lidc-table", str(args.lidc_table)]
        steps.append(synth)
    steps.append(
        [
            "train",
            "--data",
            str(args.data),
            "--out",
            str(args.model),
            "--epochs",
            str(args.epochs),
            "--device",
            args.device,
            "--no-progress",
        ]
    )
    steps.append(
        [
            "build",
            "--data",
            str(args.data),
            "--model",
            str(args.model),
            "--index",
            str(args.index),
            "--device",
            args.device,
            "--no-progress",
        ]
    )
    steps.append(["verify", "--index", str(args.index)])
    for step in steps:
        logger.info("bootstrap: nodule-index %s", " ".join(step))
        code = main(step)
        if code != 0:
            logger.error("bootstrap stopped: `nodule-index %s` exited %s", step[0], code)
            return code
    return 0
