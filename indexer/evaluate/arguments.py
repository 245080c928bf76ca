"""Arguments of ``nodule-index evaluate`` and ``crossval`` (light: no torch, no figures).

The commands are ``indexer.evaluate.command`` and ``indexer.evaluate.crossval_command``.
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


def add_crossval(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``crossval`` on the CLI."""
    p = sub.add_parser(
        "crossval",
        help="patient-grouped cross-validation of a training recipe (or of one fixed model)",
        description="Patient-grouped cross-validation on a labelled LUNA16-layout set: one "
        "model per fold is trained with the train options after -- and that fold held out (a "
        "fold trained before with the same options is reused), or --model judges one fixed "
        "model; writes cv.json and cv.md with the evaluate baselines and paired intervals. "
        "Example: nodule-index crossval --data data/real --out reports/cv -- --init models/demo",
    )
    add_path(
        p,
        "--data",
        Kind.LUNA,
        required=True,
        what="a LUNA16-layout folder with labels.csv",
        help="LUNA16-layout folder + labels.csv",
    )
    add_path(
        p,
        "--out",
        Kind.OUTPUT_FOLDER,
        required=True,
        help="cv.json, cv.md and the fold models",
    )
    p.add_argument("--folds", type=int, default=5, help="folds (subsets dealt round-robin)")
    add_path(p, "--model", Kind.MODEL, default=None, help="judge this fixed model instead")
    p.add_argument(
        "--size-profile-weight",
        type=float,
        action="append",
        default=None,
        help="candidate size-profile weights (repeat); with several, each fold uses the one "
        "that scored best on the other folds (default 0: features only)",
    )
    p.add_argument(
        "--search-blocks",
        action="store_true",
        help="also choose the search vector's blocks (features, size, density, shape, learned "
        "from readers' ratings) by nested CV and score the choice (needs rated nodules)",
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    add_path(
        p,
        "--set-mask-policy",
        Kind.MODEL,
        default=None,
        help="write the mask policy the folds support (the branch diameters where region "
        "growing measured better) into this model's card: a model trained with the same recipe",
    )
    add_path(
        p,
        "--set-search",
        Kind.MODEL,
        default=None,
        help="with --search-blocks: fit the blocks the folds chose (over all folds) on every "
        "rated nodule with this model's features and write them into its card (its vectors "
        "and fingerprint change: rebuild the catalogue)",
    )
    p.add_argument(
        "train_args",
        nargs=argparse.REMAINDER,
        help="after --: options for train (e.g. --init models/demo --outside edge --epochs 4)",
    )
