"""``nodule-index evaluate``: the report of a catalogue version, its table printed at the end.

Its arguments are registered by ``indexer.evaluate.arguments``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from indexer.evaluate.evaluation import evaluate
from indexer.evaluate.loading import EvaluateOptions, EvaluationError
from indexer.evaluate.render import render_markdown
from model.clinical.labels import ExcludeThree, LabelRule
from model.nn.card import CardError
from model.store.layout import LayoutError

logger = logging.getLogger(__name__)


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
