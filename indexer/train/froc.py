"""Detection metrics: ROC AUC and the LUNA16 FROC / CPM."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

from indexer.data.luna import LunaPoint
from model.nn.card import FrocResult

#: LUNA16's operating points, false positives per scan.
FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: Excluded findings without a diameter (LUNA16 writes -1) get this one for the hit test.
EXCLUDED_DEFAULT_DIAMETER_MM = 10.0


def roc_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve of two classes (the larger label positive); NaN with one class.

    The Mann-Whitney form: the rank sum of the positives with ties given their average rank,
    which equals the trapezoidal ROC area (scikit-learn's). Computed directly because the
    evaluation's bootstraps call it tens of thousands of times and scikit-learn's input checks
    cost about 4 ms a call.
    """
    y = np.asarray(labels)
    classes = np.unique(y)
    if len(classes) < 2:
        return float("nan")
    if len(classes) > 2:
        raise ValueError(f"roc_auc needs two classes, got {len(classes)}")
    positive = y == classes[1]
    n_pos = int(positive.sum())
    n_neg = len(y) - n_pos
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _hits(point: LunaPoint, targets: Sequence[LunaPoint], default: float) -> list[int]:
    c = np.asarray(point.center_xyz)
    out = []
    for i, t in enumerate(targets):
        d = t.diameter_mm if t.diameter_mm and t.diameter_mm > 0 else default
        if np.linalg.norm(c - np.asarray(t.center_xyz)) <= d / 2.0:
            out.append(i)
    return out


def froc(
    candidates: Sequence[LunaPoint],
    scores: npt.ArrayLike,
    annotations: Sequence[LunaPoint],
    series: Sequence[str],
    excluded: Sequence[LunaPoint] = (),
    fp_rates: Sequence[float] = FP_RATES,
) -> FrocResult:
    """FROC with the LUNA16 protocol over the scans in ``series``.

    A candidate within diameter/2 of a nodule hits it (each nodule counts once, at its best
    score); a candidate that hits only an excluded finding is ignored; any other candidate is a
    false positive. Sensitivity at each rate of false positives per scan is the highest the curve
    reaches within that rate; CPM is the mean over the rates.
    """
    score = np.asarray(scores, dtype=np.float64)
    scans = set(series)
    nodules = [a for a in annotations if a.series_uid in scans]
    by_series: dict[str, list[int]] = defaultdict(list)
    for i, a in enumerate(nodules):
        by_series[a.series_uid].append(i)
    excluded_by: dict[str, list[LunaPoint]] = defaultdict(list)
    for e in excluded:
        excluded_by[e.series_uid].append(e)
    best = np.full(len(nodules), -np.inf)
    fp_scores = []
    for cand, s in zip(candidates, score, strict=True):
        if cand.series_uid not in scans:
            continue
        local = [nodules[i] for i in by_series[cand.series_uid]]
        hit = _hits(cand, local, EXCLUDED_DEFAULT_DIAMETER_MM)
        if hit:
            for h in hit:
                k = by_series[cand.series_uid][h]
                best[k] = max(best[k], s)
        elif not _hits(cand, excluded_by[cand.series_uid], EXCLUDED_DEFAULT_DIAMETER_MM):
            fp_scores.append(s)
    n_scans, n_nodules = len(scans), len(nodules)
    if n_nodules == 0 or n_scans == 0:
        return FrocResult(
            fp_per_scan=tuple(fp_rates),
            sensitivity=tuple(0.0 for _ in fp_rates),
            cpm=0.0,
            n_scans=n_scans,
            n_nodules=n_nodules,
        )
    thresholds = np.unique(np.concatenate([best[np.isfinite(best)], np.asarray(fp_scores)]))[::-1]
    fps = np.array([(np.asarray(fp_scores) >= t).sum() for t in thresholds]) / n_scans
    sens = np.array([(best >= t).sum() for t in thresholds]) / n_nodules
    # The curve starts at (0 FP, 0 sensitivity); the sensitivity at a rate is the best one the
    # curve reaches without exceeding that many false positives per scan (a step function).
    fps = np.concatenate([[0.0], fps])
    sens = np.concatenate([[0.0], sens])
    at = np.array([sens[fps <= rate].max() for rate in fp_rates])
    return FrocResult(
        fp_per_scan=tuple(float(r) for r in fp_rates),
        sensitivity=tuple(float(v) for v in at),
        cpm=float(np.mean(at)),
        n_scans=n_scans,
        n_nodules=n_nodules,
    )
