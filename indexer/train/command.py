"""The ``nodule-index train`` subcommand."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from pydantic import ValidationError

from indexer.luna import LunaLayoutError
from indexer.train.samples import data_fingerprint
from indexer.train.trainer import TrainConfig, prepare_data, train
from indexer.version import code_version
from model.card import CardError, ModelCard, read_card
from model.checkpoint import load_model
from model.network import NoduleNet
from model.threads import ThreadPolicy

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``train`` on the CLI."""
    p = sub.add_parser("train", help="train the FP-reduction network on candidates_V2.csv")
    p.add_argument("--data", type=Path, required=True, help="LUNA16-layout folder")
    p.add_argument("--out", type=Path, required=True, help="model folder (card.json, weights.pt)")
    p.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    p.add_argument(
        "--device",
        default=None,
        help="auto, cpu or cuda (default: $NODULE_DEVICE, else auto)",
    )
    p.add_argument("--val-subset", action="append", default=None, help="held-out subset(s)")
    p.add_argument("--cache-dir", type=Path, default=None, help="patch cache (default OUT/cache)")
    p.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    p.add_argument("--samples-per-epoch", type=int, default=TrainConfig().samples_per_epoch)
    p.add_argument("--width", type=int, default=TrainConfig().width, help="channels of level 1")
    p.add_argument(
        "--embedding-pool",
        choices=("center-multiscale", "avg"),
        default=TrainConfig().embedding_pool,
        help="search vector: all encoder levels pooled at the patch centre (default), or the "
        "bottleneck averaged over the whole patch",
    )
    p.add_argument(
        "--max-negatives-per-scan", type=int, default=TrainConfig().max_negatives_per_scan
    )
    p.add_argument("--lr", type=float, default=TrainConfig().lr, help="peak learning rate")
    p.add_argument(
        "--outside",
        choices=("air", "edge"),
        default=TrainConfig().patch.outside,
        help="what the patch holds outside the scanned volume (a card parameter: build and the "
        "service then do the same); edge suits crop collections",
    )
    p.add_argument(
        "--intensity-jitter",
        type=float,
        default=TrainConfig().intensity_jitter,
        help="largest offset added to a positive's patch, in HU-window units (0.02 = 28 HU)",
    )
    p.add_argument(
        "--scale-jitter",
        type=float,
        default=TrainConfig().scale_jitter,
        help="largest relative zoom of a positive's patch (0.1 = 0.9x..1.1x)",
    )
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from this model's weights (fine-tuning); its architecture and patch are kept",
    )
    p.add_argument(
        "--select",
        choices=("val-auc", "last"),
        default=TrainConfig().select,
        help="keep the epoch with the best validation AUC, or the last one",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    p.add_argument("--force", action="store_true", help="train even if OUT has a matching model")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _same_run(card: ModelCard, fingerprint: str, config: TrainConfig) -> bool:
    if card.training is None or card.training.data_fingerprint != fingerprint:
        return False
    return card.training.options == config.model_dump(mode="json")


def log_report(card: ModelCard) -> None:
    """Log the validation metrics and the FROC table of a trained model."""
    t = card.training
    if t is None:
        return
    logger.info(
        "model %s: best epoch %d/%d, val AUC %.4f, val loss %.4f, trained %.0f s on %s",
        card.fingerprint[:12],
        t.best_epoch + 1,
        t.epochs,
        t.metrics.get("val_auc", float("nan")),
        t.metrics.get("val_loss", float("nan")),
        t.train_time_s,
        t.device,
    )
    if t.froc is not None:
        rates = " ".join(f"{r:>6g}" for r in t.froc.fp_per_scan)
        sens = " ".join(f"{s:6.3f}" for s in t.froc.sensitivity)
        logger.info(
            "FROC on %s (%d scans, %d nodules)",
            ",".join(t.val_subsets),
            t.froc.n_scans,
            t.froc.n_nodules,
        )
        logger.info("  FP/scan     %s", rates)
        logger.info("  sensitivity %s   CPM %.3f", sens, t.froc.cpm)


def run(args: argparse.Namespace) -> int:
    """Train (or reuse a matching model); exit 2 with a message on bad input."""
    init: NoduleNet | None = None
    try:
        if args.init is not None:
            init, init_card = load_model(args.init)
            arch: dict[str, object] = {
                "width": init_card.arch.width,
                "levels": init_card.arch.levels,
                "embedding_pool": init_card.arch.embedding_pool,
                "embedding_center_fraction": init_card.arch.embedding_center_fraction,
                "patch": init_card.preprocessing.model_copy(update={"outside": args.outside}),
                "init_fingerprint": init_card.fingerprint,
            }
        else:
            arch = {
                "width": args.width,
                "embedding_pool": args.embedding_pool,
                "patch": TrainConfig().patch.model_copy(update={"outside": args.outside}),
            }
        config = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            samples_per_epoch=args.samples_per_epoch,
            lr=args.lr,
            max_negatives_per_scan=args.max_negatives_per_scan,
            intensity_jitter=args.intensity_jitter,
            scale_jitter=args.scale_jitter,
            select=args.select,
            seed=args.seed,
            **arch,
        )
    except CardError as e:
        logger.error("--init: %s", e)
        return 2
    except ValidationError as e:
        logger.error("invalid training options: %s", e)
        return 2
    ThreadPolicy.all_cores().apply()  # training owns the machine
    try:
        fingerprint = data_fingerprint(args.data)
        if not (args.force or args.resume) and (args.out / "card.json").is_file():
            try:
                card = read_card(args.out)
            except CardError:
                card = None
            if card is not None and _same_run(card, fingerprint, config):
                logger.info("reusing the model in %s, trained before on the same data", args.out)
                log_report(card)
                return 0
        data = prepare_data(
            args.data,
            config,
            val_subsets=args.val_subset,
            cache_dir=args.cache_dir or args.out / "cache",
            fingerprint=fingerprint,
            workers=max(1, args.workers),
            progress=not args.no_progress,
        )
        card = train(
            config,
            data,
            args.out,
            device_name=args.device,
            code_version=code_version(),
            resume=args.resume,
            progress=not args.no_progress,
            init=init,
        )
    except (LunaLayoutError, ValueError, OSError) as e:
        logger.error("%s", e)
        return 2
    log_report(card)
    return 0
