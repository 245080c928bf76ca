"""``nodule-index evaluate``: the report of a catalogue version, its table printed at the end."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from indexer.evaluate.report import EvaluateOptions, EvaluationError, evaluate, render_markdown
from model.card import CardError
from model.labels import ExcludeThree, LabelRule
from model.store.layout import LayoutError

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``evaluate`` on the CLI."""
    p = sub.add_parser(
        "evaluate",
        help="leave-one-out retrieval metrics of a catalogue with baselines, figures and a report",
    )
    p.add_argument("--index", type=Path, required=True, help="INDEX_DIR")
    p.add_argument("--out", type=Path, required=True, help="REPORT_DIR (report.json, .md, PNGs)")
    p.add_argument("--version", default=None, help="catalogue version (default: CURRENT)")
    p.add_argument(
        "--exclude-same-patient",
        action="store_true",
        help="headline numbers without neighbours of the query's patient (both are reported)",
    )
    p.add_argument(
        "--label-rule",
        choices=[rule.value for rule in ExcludeThree],
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


def run(args: argparse.Namespace) -> int:
    """Evaluate; exit 0 with a report, 2 when the catalogue cannot be evaluated."""
    if args.vote_k < 1 or args.bootstrap < 1:
        logger.error("--vote-k and --bootstrap must be at least 1")
        return 2
    options = EvaluateOptions(
        exclude_same_patient=args.exclude_same_patient,
        label_rule=LabelRule(exclude_three=ExcludeThree(args.label_rule))
        if args.label_rule
        else None,
        vote_k=args.vote_k,
        bootstrap_replicates=args.bootstrap,
        seed=args.seed,
        workers=max(1, args.workers),
        device=args.device,
    )
    try:
        report = evaluate(args.index, args.out, args.version, options)
    except (EvaluationError, LayoutError, CardError, FileNotFoundError) as e:
        logger.error("%s", e)
        return 2
    if not args.quiet:
        # The table is the command's product (the demo ends with it), not a log line.
        sys.stdout.write(render_markdown(report) + "\n")
        sys.stdout.flush()
    return 0
