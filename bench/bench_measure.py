"""Size and type estimates (model.clinical.measure) against the LIDC readers, on the real VOIs.

For each nodule of ``../shared/data/lidc_vois`` (image, mask, LUNA16 diameter, the readers'
max-vote Texture rating):

- the mask's mean diameter (Lung-RADS: (long + short axis) / 2) and long axis against the
  LUNA16 ``diameter_mm`` (the mean of the readers' diameters): mean absolute difference, the
  mean signed difference and Pearson r;
- the type from the HU inside the mask's core against Texture (1-2 ground-glass, 3-4
  part-solid, 5 solid): with model.clinical.measure's cut-points (agreement, Cohen's kappa,
  confusion), with the a-priori ones they replaced (0.15, 0.6), and with the two cut-points
  refitted on the other patients of a patient-grouped 5-fold split, scored on the held-out patients
  only (how model.clinical.measure's were chosen);
- the region-growing mask from the LUNA16 centre alone: how often it gives one (it refuses
  nodules it cannot part from their surroundings), its Dice with the readers' mask and its mean
  diameter against ``diameter_mm``.

    python -m bench.bench_measure [--shared ../shared/data] [--out bench/results/FILE.json]
"""

from __future__ import annotations

import argparse
import csv
import logging
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import cohen_kappa_score

from bench.common import cpu_model, now_utc, write_results
from model.clinical.labels import texture_type
from model.clinical.measure import (
    GROUND_GLASS_MAX_SOLID,
    SOLID_MIN_SOLID,
    MeasureError,
    grow_region,
    measure,
    nodule_type,
)
from model.ct.open import load_volume

logger = logging.getLogger("bench.measure")

TYPES = ("ground-glass", "part-solid", "solid")
#: The cut-points chosen before any real nodule was seen (replaced; kept for comparison).
A_PRIORI_CUT_POINTS = (0.15, 0.6)
FOLDS = 5


@dataclass(frozen=True)
class Row:
    """One VOI's estimates and the readers' values."""

    patient_id: str
    diameter_mm: float
    texture: int
    mean_mm: float
    long_mm: float
    solid_fraction: float
    grown_mean_mm: float | None
    dice: float


def _measure_one(voi: dict[str, str], root: Path) -> Row | None:
    image = load_volume(root / voi["image"])
    mask = load_volume(root / voi["mask"]).hu_zyx > 0.5
    if not mask.any():
        return None
    found = measure(mask, image.geometry, image.hu_zyx)
    center = (float(voi["coordX"]), float(voi["coordY"]), float(voi["coordZ"]))
    grown_mean, dice = None, 0.0
    try:
        grown = grow_region(image.hu_zyx, image.geometry, center)
        if grown.any():
            grown_mean = measure(grown, image.geometry).mean_diameter_mm
            dice = float(2 * (grown & mask).sum() / (grown.sum() + mask.sum()))
    except MeasureError as e:
        logger.warning("region growing: %s", e)
    assert found.solid_fraction is not None
    return Row(
        patient_id=voi["patient_id"],
        diameter_mm=float(voi["diameter_mm"]),
        texture=round(float(voi["Texture_value"])),
        mean_mm=found.mean_diameter_mm,
        long_mm=found.long_axis_mm,
        solid_fraction=found.solid_fraction,
        grown_mean_mm=grown_mean,
        dice=dice,
    )


def _agreement(estimate: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    diff = estimate - reference
    return {
        "mean_abs_diff_mm": float(np.abs(diff).mean()),
        "mean_signed_diff_mm": float(diff.mean()),
        "pearson_r": float(np.corrcoef(estimate, reference)[0, 1]),
        "n": len(estimate),
    }


def _typed(fractions: np.ndarray, gg_max: float, solid_min: float) -> list[str]:
    return [TYPES[0] if f < gg_max else TYPES[1] if f < solid_min else TYPES[2] for f in fractions]


def _type_scores(predicted: list[str], truth: list[str]) -> dict[str, Any]:
    pairs = Counter(zip(truth, predicted, strict=True))
    return {
        "agreement": float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)])),
        "cohen_kappa": float(cohen_kappa_score(truth, predicted, labels=list(TYPES))),
        "confusion_readers_by_estimate": {t: {p: pairs[(t, p)] for p in TYPES} for t in TYPES},
    }


def _fit_cut_points(fractions: np.ndarray, truth: list[str]) -> tuple[float, float]:
    """The two cut-points with the best kappa on these nodules (a grid of 0.01)."""
    grid = np.round(np.arange(0.01, 1.0, 0.01), 2)
    best, best_kappa = (GROUND_GLASS_MAX_SOLID, SOLID_MIN_SOLID), -2.0
    for low in grid:
        for high in grid[grid > low]:
            kappa = cohen_kappa_score(truth, _typed(fractions, low, high), labels=list(TYPES))
            if kappa > best_kappa:
                best, best_kappa = (float(low), float(high)), float(kappa)
    return best


def _cross_validated_types(rows: list[Row]) -> dict[str, Any]:
    fold = np.array([zlib.crc32(r.patient_id.encode()) % FOLDS for r in rows])
    fractions = np.array([r.solid_fraction for r in rows])
    truth: list[str] = [texture_type(r.texture) for r in rows]
    predicted = [""] * len(rows)
    cuts = []
    for f in range(FOLDS):
        train = np.flatnonzero(fold != f)
        low, high = _fit_cut_points(fractions[train], [truth[i] for i in train])
        cuts.append([low, high])
        for i in np.flatnonzero(fold == f):
            predicted[i] = _typed(fractions[i : i + 1], low, high)[0]
    return {"cut_points_per_fold": cuts, **_type_scores(predicted, truth)}


def run(shared: Path) -> dict[str, Any]:
    """Every measurement over the VOIs; returns the results record."""
    root = shared / "lidc_vois"
    with (root / "nodules.csv").open(newline="", encoding="utf-8") as f:
        vois = list(csv.DictReader(f))
    rows = [r for r in (_measure_one(v, root) for v in vois) if r is not None]
    diameter = np.array([r.diameter_mm for r in rows])
    truth: list[str] = [texture_type(r.texture) for r in rows]
    fractions = np.array([r.solid_fraction for r in rows])
    grown = [r for r in rows if r.grown_mean_mm is not None]
    return {
        "benchmark": "bench_measure",
        "machine": cpu_model(),
        "date": now_utc(),
        "n_vois": len(vois),
        "n_measured": len(rows),
        "n_patients": len({r.patient_id for r in rows}),
        "readers_texture_counts": dict(Counter(truth)),
        "mask_mean_diameter_vs_luna16_diameter": _agreement(
            np.array([r.mean_mm for r in rows]), diameter
        ),
        "mask_long_axis_vs_luna16_diameter": _agreement(
            np.array([r.long_mm for r in rows]), diameter
        ),
        "type_default_cut_points": {
            "cut_points": [GROUND_GLASS_MAX_SOLID, SOLID_MIN_SOLID],
            **_type_scores([nodule_type(f) for f in fractions], truth),
        },
        "type_a_priori_cut_points": {
            "cut_points": list(A_PRIORI_CUT_POINTS),
            **_type_scores(_typed(fractions, *A_PRIORI_CUT_POINTS), truth),
        },
        "type_refitted_patient_grouped_cv": _cross_validated_types(rows),
        "region_growing": {
            "n_grown": len(grown),
            "n_refused": len(rows) - len(grown),
            "dice_with_readers_mask_median_of_grown": float(np.median([r.dice for r in grown])),
            "mean_diameter_vs_luna16_diameter": _agreement(
                np.array([r.grown_mean_mm for r in grown]),
                np.array([r.diameter_mm for r in grown]),
            ),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/measure_lidc_vois.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    record = run(args.shared)
    write_results(args.out, record)
    logger.info("%s", {k: v for k, v in record.items() if k.startswith(("mask", "type"))})


if __name__ == "__main__":
    main()
