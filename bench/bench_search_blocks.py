"""Record the search vector's nested choice and its scores from a ``crossval --search-blocks``.

``make real-model`` runs ``nodule-index crossval --search-blocks --set-search models/real`` on
the real set (issue 29). This keeps that report's choice, the chosen vectors' scores with
recorded and with estimated query sizes, the network's features, every baseline, the paired
differences from diameter + density and the "looks alike" rating differences in
``bench/results`` with the machine and the date.

    make real-model
    python -m bench.bench_search_blocks [--cv reports/real/cv/cv.json] [--model models/real]
        [--out bench/results/search_blocks_real_cv.json]
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import cpu_model, now_utc, write_results

logger = logging.getLogger("bench.search_blocks")


def _scores(section: dict[str, Any]) -> dict[str, Any]:
    recall = section["recall_at_k"]
    alike = section.get("looks_alike") or {}
    return {
        "binary_recall_at_1": recall["binary"]["1"],
        "four_class_recall_at_1": recall["four_class"]["1"],
        "vote_auc": section["auc"],
        "vote_auc_ci95": section["auc_ci95"],
        "rating_difference_top1": alike.get("rating_difference_top1"),
    }


def record(cv_json: Path, model_dir: Path | None) -> dict[str, Any]:
    """The results record of one ``crossval --search-blocks`` report."""
    cv = json.loads(cv_json.read_text(encoding="utf-8"))
    search = cv.get("search")
    if not search:
        raise SystemExit(f"{cv_json}: no search section (crossval without --search-blocks?)")
    card = None
    if model_dir is not None:
        card = json.loads((model_dir / "card.json").read_text(encoding="utf-8")).get("search")
    return {
        "benchmark": "bench_search_blocks",
        "what": "the search vector's blocks chosen by nested patient-grouped CV; each fold's "
        "queries searched with a space fitted without them (crossval --search-blocks)",
        "machine": cpu_model(),
        "date": now_utc(),
        "cv_report": str(cv_json),
        "recipe": cv.get("train_args"),
        "model": cv.get("model"),
        "n_queries": cv["n_queries"],
        "n_patients": cv["n_patients"],
        "choice": {k: v for k, v in search["choice"].items() if k != "candidates"},
        "best_candidates": search["choice"]["candidates"],
        "chosen_recorded_sizes": _scores(search["recorded_sizes"]),
        "chosen_estimated_sizes": _scores(search["estimated_sizes"]),
        "n_estimated": search["n_estimated"],
        "network_features": _scores(cv["network"]),
        "baselines": {name: _scores(section) for name, section in cv["baselines"].items()},
        "paired_chosen_minus": search["paired"],
        "paired_estimated_minus": search["paired_estimated"],
        "card_search": None
        if card is None
        else {k: card[k] for k in ("weights", "chosen_by") if k in card},
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cv", type=Path, default=Path("reports/real/cv/cv.json"))
    parser.add_argument("--model", type=Path, default=Path("models/real"))
    parser.add_argument(
        "--out", type=Path, default=Path("bench/results/search_blocks_real_cv.json")
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = record(args.cv, args.model if args.model.exists() else None)
    write_results(args.out, result)
    chosen = result["chosen_recorded_sizes"]
    logger.info(
        "chosen %s: binary R@1 %.3f, 4-class %.3f, AUC %.3f; wrote %s",
        result["choice"]["final"],
        chosen["binary_recall_at_1"],
        chosen["four_class_recall_at_1"],
        chosen["vote_auc"],
        args.out,
    )


if __name__ == "__main__":
    main()
