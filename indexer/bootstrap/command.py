"""``nodule-index bootstrap``'s run: the steps, each through the CLI's own ``main``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence

from model.store.layout import CURRENT

logger = logging.getLogger(__name__)


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
