"""What each training ingredient adds on the real LIDC VOIs, by patient-grouped cross-validation.

    .venv/bin/python -m bench.bench_real_cv [--demo-model models/demo] [--out reports/cv]

Needs the shared data (``../shared/data`` or ``$NODULE_SHARED_DATA``) and the demo model
(``make demo``). Draws the real sets it lacks with ``nodule-index real-set``: ``data/real``,
``data/real-ins`` (``--inserted-per-scan 75``) and ``data/real-bg``
(``--background-always-trains``). Every recipe runs ``nodule-index crossval`` (5 folds; fold
models are reused when trained before with the same options) twice: features only, and with
the size profile, whose weight each fold chooses on the other folds. Writes
``bench/results/real_cv.json`` and ``real_cv.md`` with the machine and the date.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import cpu_model, now_utc, write_results
from indexer.cli import main as nodule_index

logger = logging.getLogger("bench.real_cv")

RESULTS = Path(__file__).parent / "results"
#: Candidate size-profile weights; each fold picks one on the other folds.
WEIGHTS = ("0", "0.1", "0.25", "0.5")
JITTER = ["--intensity-jitter", "0.02", "--scale-jitter", "0.1"]


@dataclass(frozen=True)
class Recipe:
    """One way of making the model, named as the table shows it."""

    name: str
    fixed_model: bool
    train_args: tuple[str, ...] = ()
    data: str = "data/real"
    """The set trained on (its labelled VOIs are the same in every set)."""


#: The real sets the recipes train on, and how each is drawn (``nodule-index real-set``).
REAL_SETS: dict[str, tuple[str, ...]] = {
    "data/real": (),
    "data/real-ins": ("--inserted-per-scan", "75"),
    "data/real-bg": ("--background-always-trains",),
}


def ensure_real_sets() -> None:
    """Draw each real set that is not there yet (deterministic: seed 0)."""
    for folder, extra in REAL_SETS.items():
        if (Path(folder) / "realset.json").is_file():
            continue
        logger.info("drawing %s", folder)
        if nodule_index(["real-set", "--out", folder, *extra]) != 0:
            raise RuntimeError(f"real-set failed for {folder}")


def recipes(demo_model: Path) -> list[Recipe]:
    """The ingredients, one at a time (the fine-tuning learning rate and epochs are fixed)."""
    tune = ("--init", str(demo_model), "--lr", "5e-4", "--epochs", "5", "--select", "last")
    return [
        Recipe("synthetic only (demo model, air outside)", True, (str(demo_model),)),
        Recipe(
            "real only: VOIs + real negatives, from scratch, edge",
            False,
            ("--outside", "edge", "--epochs", "8", "--select", "last", *JITTER),
        ),
        Recipe(
            "synthetic, then real fine-tuning, air", False, (*tune, "--outside", "air", *JITTER)
        ),
        Recipe(
            "synthetic, then real fine-tuning, edge, no jitter", False, (*tune, "--outside", "edge")
        ),
        Recipe(
            "synthetic, then real fine-tuning, edge", False, (*tune, "--outside", "edge", *JITTER)
        ),
        Recipe(
            "... + real LIDC shapes inserted into the real CTs",
            False,
            (*tune, "--outside", "edge", *JITTER),
            data="data/real-ins",
        ),
        Recipe(
            "... + the whole CTs' crops in every fold's training",
            False,
            (*tune, "--outside", "edge", *JITTER),
            data="data/real-bg",
        ),
    ]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")[:60]


def run_recipe(recipe: Recipe, out_root: Path, weights: tuple[str, ...]) -> dict[str, Any]:
    """One crossval run of a recipe with the given candidate weights; its cv.json."""
    out = out_root / _slug(recipe.name) / ("size" if len(weights) > 1 else "features")
    args = ["crossval", "--data", recipe.data, "--out", str(out), "--workers", "2"]
    args += [a for w in weights for a in ("--size-profile-weight", w)]
    if recipe.fixed_model:
        args += ["--model", recipe.train_args[0]]
    else:
        # Both runs of a recipe train into one folder, so the second reuses the fold models.
        args[4] = str(out.parent)
        args += ["--", *recipe.train_args]
    if nodule_index(args) != 0:
        raise RuntimeError(f"crossval failed for {recipe.name}")
    report: dict[str, Any] = json.loads((Path(args[4]) / "cv.json").read_text())
    return report


def _fingerprint(model_dir: Path) -> str:
    card: dict[str, Any] = json.loads((model_dir / "card.json").read_text())
    return str(card["fingerprint"])


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    net = report["network"]
    return {
        "binary_recall_at_1": net["recall_at_k"]["binary"]["1"],
        "four_class_recall_at_1": net["recall_at_k"]["four_class"]["1"],
        "vote_auc": net["auc"],
        "size_profile_weight_per_fold": report["size_profile_weight_per_fold"],
        "paired_vs_baselines": report["paired_vs_baselines"],
    }


def _cell(value: float, paired: dict[str, Any], metric: str) -> str:
    beats = [n for n in ("raw", "random_init", "diameter") if paired[n][metric]["beats"]]
    return f"{value:.3f}" + (f" (beats {', '.join(beats)})" if beats else "")


def markdown(record: dict[str, Any]) -> str:
    """The table of recipes, with the baselines of the same run below it."""
    lines = [
        "# Training ingredients on the real LIDC VOIs (patient-grouped 5-fold CV)",
        "",
        f"{record['date']}, {record['machine']['cpu']}, {record['machine']['cores']} cores. "
        f"Fine-tuning starts from the demo model {record['demo_model_fingerprint'][:12]}. "
        f"{record['n_queries']} labelled VOIs of {record['n_patients']} patients; each fold's "
        "nodules query all other patients' nodules with a model that never trained on the fold. "
        "'beats X': the paired bootstrap 95% interval of network minus X excludes zero.",
        "",
        "| recipe | vector | binary R@1 | 4-class R@1 | vote AUC |",
        "|---|---|---|---|---|",
    ]
    for row in record["recipes"]:
        for vector, s in (("features", row["features"]), ("+ size profile", row["size"])):
            p = s["paired_vs_baselines"]
            lines.append(
                f"| {row['name']} | {vector} | "
                f"{_cell(s['binary_recall_at_1'], p, 'binary_recall_at_1')} | "
                f"{_cell(s['four_class_recall_at_1'], p, 'four_class_recall_at_1')} | "
                f"{_cell(s['vote_auc'], p, 'vote_auc')} |"
            )
    lines += [
        "",
        "The baselines cut the same patches as the network, so they depend on the outside "
        "policy: with air, a VOI's z-extent (which follows its diameter, r = 0.90) frames the "
        "patch; with edge, it does not.",
        "",
        "| baseline | outside | binary R@1 | 4-class R@1 | vote AUC |",
        "|---|---|---|---|---|",
    ]
    for outside, baselines in record["baselines_by_outside"].items():
        for name, b in baselines.items():
            r = b["recall_at_k"]
            lines.append(
                f"| {name} | {outside} | {r['binary']['1']:.3f} | {r['four_class']['1']:.3f} | "
                f"{b['auc']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run every recipe and write the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--demo-model", type=Path, default=Path("models/demo"))
    parser.add_argument("--out", type=Path, default=Path("reports/cv"))
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    ensure_real_sets()
    rows, last = [], None
    by_outside: dict[str, Any] = {}
    for recipe in recipes(args.demo_model):
        t0 = time.perf_counter()
        features = run_recipe(recipe, args.out, ("0",))
        size = run_recipe(recipe, args.out, WEIGHTS)
        rows.append(
            {
                "name": recipe.name,
                "train_args": list(recipe.train_args),
                "data": recipe.data,
                "features": _summary(features),
                "size": _summary(size),
                "seconds": time.perf_counter() - t0,
            }
        )
        last = features
        outside = "edge" if "edge" in recipe.train_args else "air"
        by_outside.setdefault(outside, features["baselines"])
    assert last is not None
    record = {
        "benchmark": "training ingredients, patient-grouped CV on the real LIDC VOIs",
        "date": now_utc(),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        # The fine-tuning recipes start from it; other machines train another one.
        "demo_model_fingerprint": _fingerprint(args.demo_model),
        "n_queries": last["n_queries"],
        "n_patients": last["n_patients"],
        "folds": last["folds"],
        "recipes": rows,
        "baselines_by_outside": by_outside,
    }
    write_results(RESULTS / "real_cv.json", record)
    (RESULTS / "real_cv.md").write_text(markdown(record), encoding="utf-8")
    logger.info("\n%s", markdown(record))


if __name__ == "__main__":
    main()
