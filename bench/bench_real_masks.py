"""Record the real recipe's mask branch on unseen patients, from ``make real-model``'s crossval.

``make real-model`` cross-validates the real recipe by patient (``nodule-index crossval``): each
fold's VOIs are measured by the fold model that did not train on them, against the readers'
masks, beside region growing (``indexer.evaluate.mask_quality``), and the folds' mask policy is
written into the real model's card. This keeps that run's mask section, the card's policy and
the retrieval beside its baselines in ``bench/results`` with the machine and the date.

    make real-model
    python -m bench.bench_real_masks [--cv reports/real/cv/cv.json] [--model models/real]
        [--out bench/results/mask_real_recipe_cv.json]
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import cpu_model, now_utc, write_results

logger = logging.getLogger("bench.real_masks")

#: The retrieval sections kept beside the masks: the network and the measurement baselines.
SECTIONS = ("diameter", "diameter_density", "measured")


def _at_1(section: dict[str, Any]) -> dict[str, float]:
    recall = section["recall_at_k"]
    return {
        "binary_recall_at_1": recall["binary"]["1"],
        "four_class_recall_at_1": recall["four_class"]["1"],
        "vote_auc": section["auc"],
    }


def record(cv_json: Path, model_dir: Path) -> dict[str, Any]:
    """The results record of one ``crossval`` report and the model its policy went into."""
    cv = json.loads(cv_json.read_text(encoding="utf-8"))
    if not cv.get("mask_quality"):
        raise SystemExit(f"{cv_json}: no mask section (a recipe without --segmentation-weight?)")
    card = json.loads((model_dir / "card.json").read_text(encoding="utf-8"))
    folds = [
        json.loads(Path(m, "card.json").read_text(encoding="utf-8")) for m in cv["fold_models"]
    ]
    return {
        "benchmark": "bench_real_masks",
        "what": "the real recipe's mask branch on patients its fold model never saw, beside "
        "region growing, Dice on the CT's own voxels (make real-model's crossval)",
        "machine": cpu_model(),
        "date": now_utc(),
        "cv_report": str(cv_json),
        "recipe": cv["train_args"],
        "folds": cv["folds"],
        "fold_model_fingerprints": [c["fingerprint"] for c in folds],
        "n_queries": cv["n_queries"],
        "n_patients": cv["n_patients"],
        "crossval_elapsed_s": cv["elapsed_s"],
        "model": {"dir": str(model_dir), "fingerprint": card["fingerprint"]},
        "mask_policy": card.get("mask_policy"),
        "mask_quality": cv["mask_quality"],
        "retrieval": {
            "network": _at_1(cv["network"]),
            **{name: _at_1(cv["baselines"][name]) for name in SECTIONS},
        },
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cv", type=Path, default=Path("reports/real/cv/cv.json"))
    parser.add_argument("--model", type=Path, default=Path("models/real"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/mask_real_recipe_cv.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = record(args.cv, args.model)
    write_results(args.out, result)
    branch = result["mask_quality"]["network"]
    logger.info(
        "branch: mask for %.0f%%, median Dice %.3f, diameter r %.2f; policy %s; wrote %s",
        100 * branch["share_with_mask"],
        branch["dice_median"],
        branch["diameter_pearson_r"],
        (result["mask_policy"] or {}).get("region_growing_mm"),
        args.out,
    )


if __name__ == "__main__":
    main()
