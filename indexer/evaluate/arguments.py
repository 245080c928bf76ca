"""Arguments of ``nodule-index evaluate`` (light: no torch, no figures).

The command is ``indexer.evaluate.command``.
"""

from __future__ import annotations

import argparse
import os

from indexer.cli_paths import Kind, add_path
from indexer.labels.arguments import EXCLUDE_THREE


def add_evaluate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``evaluate`` on the CLI."""
    p = sub.add_parser(
        "evaluate",
        help="leave-one-out retrieval metrics of a catalogue with baselines, figures and a report",
        description="Leave-one-out retrieval metrics of a catalogue version (the paper's Table "
        "1 protocol) with the raw, random-weight, diameter and diameter + raw baselines and "
        "paired bootstrap intervals; writes report.json, report.md, tsne.png and neighbors.png "
        "to REPORT_DIR and prints the table.",
    )
    add_path(p, "--index", Kind.CATALOGUE, required=True, help="INDEX_DIR")
    add_path(
        p,
        "--out",
        Kind.OUTPUT_FOLDER,
        required=True,
        help="REPORT_DIR (report.json, .md, PNGs)",
    )
    p.add_argument("--version", default=None, help="catalogue version (default: CURRENT)")
    p.add_argument(
        "--exclude-same-patient",
        action="store_true",
        help="headline numbers without neighbours of the query's patient (both are reported)",
    )
    p.add_argument(
        "--label-rule",
        choices=EXCLUDE_THREE,
        default=None,
        help="re-derive labels from the stored ratings: drop round(mean)=3 (round-mean, the "
        "paper's 679), only mean=3 (mean-equals-3), or none; default: the catalogue's labels",
    )
    p.add_argument("--vote-k", type=int, default=5, help="neighbours in the kNN vote (default 5)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument(
        "--device",
        default=None,
        help="auto, cpu or cuda (default: $NODULE_DEVICE, else auto)",
    )
    p.add_argument("--quiet", action="store_true", help="do not print the report table")
