"""``nodule-index describe``: check a LUNA16-layout folder and cut every annotated nodule's patch.

Works the same on the synthetic set and on the real LUNA16 download: every annotation must find
its series and lie inside the volume; each nodule's patch is cut through the one patch function
(region reads), and the table of what was found is logged.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.data.luna import candidates_path, find_series, read_annotations, read_candidates
from model.ct.open import open_volume
from model.ct.volume import VolumeReadError
from model.preprocessing import CoordinateOutsideVolumeError, PatchSpec, patch_hu

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSummary:
    """What ``describe`` found in a LUNA16-layout folder."""

    n_series: int
    n_annotations: int
    n_candidates: dict[int, int]
    diameter_quartiles_mm: tuple[float, float, float]
    center_hu_median: float
    problems: list[str]


def describe(data_dir: Path, spec: PatchSpec) -> DataSummary:
    """Check every annotation against its volume and measure the HU at its centre."""
    series = find_series(data_dir)
    annotations = read_annotations(data_dir / "annotations.csv")
    cpath = candidates_path(data_dir)
    candidates = read_candidates(cpath) if cpath.is_file() else []
    problems: list[str] = []
    center_hu = []
    small = PatchSpec(patch_shape_zyx=(4, 4, 4), spacing_mm=0.75, hu_window=spec.hu_window)
    by_series: dict[str, list[tuple[float, float, float]]] = {}
    for a in annotations:
        by_series.setdefault(a.series_uid, []).append(a.center_xyz)
    for uid, centers in sorted(by_series.items()):
        if uid not in series:
            problems.append(f"{uid}: annotated series has no .mhd in any subset")
            continue
        try:
            source = open_volume(series[uid])
            for center in centers:
                center_hu.append(float(patch_hu(source, center, small).mean()))
        except (VolumeReadError, CoordinateOutsideVolumeError) as e:
            problems.append(f"{uid}: {e}")
    diameters = (
        np.array([a.diameter_mm or 0.0 for a in annotations]) if annotations else np.zeros(1)
    )
    q1, q2, q3 = (float(v) for v in np.percentile(diameters, [25, 50, 75]))
    return DataSummary(
        n_series=len(series),
        n_annotations=len(annotations),
        n_candidates=dict(Counter(c.label or 0 for c in candidates)),
        diameter_quartiles_mm=(q1, q2, q3),
        center_hu_median=float(np.median(center_hu)) if center_hu else float("nan"),
        problems=problems,
    )
