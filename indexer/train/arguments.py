"""Arguments of ``nodule-index train`` (light: no torch; the command is ``.command``).

The recipe's options default to None here: ``TrainConfig`` (which imports torch) holds their
defaults, and ``indexer.train.command`` fills in only what was given.
"""

from __future__ import annotations

import argparse
import os

from indexer.cli_paths import Kind, add_path

#: The options that are ``TrainConfig`` fields of the same name (None: the recipe's default).
RECIPE_OPTIONS = (
    "epochs",
    "batch_size",
    "samples_per_epoch",
    "max_negatives_per_scan",
    "lr",
    "intensity_jitter",
    "scale_jitter",
    "segmentation_weight",
    "select",
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``train`` on the CLI."""
    p = sub.add_parser(
        "train",
        help="train the FP-reduction network on candidates_V2.csv",
        description="Train (or fine-tune, --init) the false-positive-reduction network on the "
        "candidates of a LUNA16-layout folder; writes MODEL_DIR/card.json and weights.pt. A "
        "model trained before on the same data with the same options is reused (--force "
        "trains anew). Options left out take the training recipe's defaults, recorded in the "
        "model card.",
    )
    add_path(p, "--data", Kind.LUNA, required=True, help="LUNA16-layout folder")
    add_path(
        p, "--out", Kind.OUTPUT_FOLDER, required=True, help="model folder (card.json, weights.pt)"
    )
    p.add_argument("--epochs", type=int, default=None, help="training epochs")
    p.add_argument(
        "--device",
        default=None,
        help="auto, cpu or cuda (default: $NODULE_DEVICE, else auto)",
    )
    p.add_argument("--val-subset", action="append", default=None, help="held-out subset(s)")
    add_path(
        p,
        "--cache-dir",
        Kind.OUTPUT_FOLDER,
        default=None,
        help="patch cache (default OUT/cache)",
    )
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--samples-per-epoch", type=int, default=None)
    p.add_argument("--width", type=int, default=None, help="channels of level 1")
    p.add_argument(
        "--embedding-pool",
        choices=("center-multiscale", "avg"),
        default=None,
        help="search vector: all encoder levels pooled at the patch centre (default), or the "
        "bottleneck averaged over the whole patch",
    )
    p.add_argument("--max-negatives-per-scan", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate")
    _add_augmentation(p)
    add_path(
        p,
        "--init",
        Kind.MODEL,
        default=None,
        help="start from this model's weights (fine-tuning); its architecture and patch are kept",
    )
    p.add_argument(
        "--select",
        choices=("val-auc", "last"),
        default=None,
        help="keep the epoch with the best validation AUC (default), or the last one",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    p.add_argument("--force", action="store_true", help="train even if OUT has a matching model")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_augmentation(p: argparse.ArgumentParser) -> None:
    """What the patch holds outside the volume, and the jitter of the positives' patches."""
    p.add_argument(
        "--outside",
        choices=("air", "edge"),
        default=None,
        help="what the patch holds outside the scanned volume (a card parameter: build and the "
        "service then do the same); edge suits crop collections",
    )
    p.add_argument(
        "--intensity-jitter",
        type=float,
        default=None,
        help="largest offset added to a positive's patch, in HU-window units (0.02 = 28 HU)",
    )
    p.add_argument(
        "--scale-jitter",
        type=float,
        default=None,
        help="largest relative zoom of a positive's patch (0.1 = 0.9x..1.1x)",
    )
    p.add_argument(
        "--segmentation-weight",
        type=float,
        default=None,
        help="weight of the auxiliary nodule-mask loss (0: no mask branch); trained on the "
        "nodules whose scan has a mask in nodule_masks/",
    )
