"""The ``nodule-index train`` subcommand (its arguments: ``indexer.train.arguments``)."""

from __future__ import annotations

import argparse
import logging

from pydantic import ValidationError

from indexer.data.luna import LunaLayoutError
from indexer.train.arguments import RECIPE_OPTIONS
from indexer.train.samples import data_fingerprint
from indexer.train.trainer import TrainConfig, prepare_data, train
from indexer.version import code_version
from model.nn.card import CardError, ModelCard, read_card
from model.nn.checkpoint import load_model
from model.nn.network import NoduleNet
from model.threads import ThreadPolicy

logger = logging.getLogger(__name__)


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


def _config(args: argparse.Namespace, init_card: ModelCard | None) -> TrainConfig:
    """The run's ``TrainConfig``: the options given, the recipe's defaults for the rest.

    Raises:
        ValidationError: an option is out of the recipe's range.
    """
    defaults = TrainConfig()
    # Fine-tuning keeps the starting model's outside policy unless --outside says otherwise
    # (an edge model was silently retrained as an air one).
    start = init_card.preprocessing.outside if init_card is not None else defaults.patch.outside
    outside = args.outside or start
    arch: dict[str, object]
    if init_card is not None:
        # Fine-tuning keeps the starting model's architecture and patch (but --outside).
        arch = {
            "width": init_card.arch.width,
            "levels": init_card.arch.levels,
            "embedding_pool": init_card.arch.embedding_pool,
            "embedding_center_fraction": init_card.arch.embedding_center_fraction,
            "patch": init_card.preprocessing.model_copy(update={"outside": outside}),
            "init_fingerprint": init_card.fingerprint,
        }
    else:
        given = {n: getattr(args, n) for n in ("width", "embedding_pool")}
        arch = {n: v for n, v in given.items() if v is not None}
        arch["patch"] = defaults.patch.model_copy(update={"outside": outside})
    recipe = {n: getattr(args, n) for n in RECIPE_OPTIONS if getattr(args, n) is not None}
    return TrainConfig(seed=args.seed, **recipe, **arch)


def run(args: argparse.Namespace) -> int:
    """Train (or reuse a matching model); exit 2 with a message on bad input."""
    init: NoduleNet | None = None
    init_card: ModelCard | None = None
    try:
        if args.init is not None:
            init, init_card = load_model(args.init)
        config = _config(args, init_card)
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
