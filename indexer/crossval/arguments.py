"""Arguments of ``nodule-index crossval`` (light); it runs in ``indexer.crossval.command``."""

from __future__ import annotations

import argparse
import os

from indexer.cli_paths import Kind, add_path


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
