"""The rated nodules of a LUNA16-layout set: what the search space is fitted and chosen on."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from indexer.evaluate.alike import mean_ratings, reader_matrix
from indexer.labels.build import read_labels
from indexer.luna import find_series
from indexer.patches import ScanJob, iter_scan_patches
from model.preprocessing import PatchSpec
from model.profile import PROFILE_NAMES, ProfileError, nodule_profile
from model.sources import open_source

F64 = npt.NDArray[np.float64]


class RatedSetError(ValueError):
    """A scan of the set cannot be read."""


@dataclass(frozen=True)
class RatedSet:
    """Every nodule of ``labels.csv`` with a scan, in file order (labelled or not).

    ``labelled`` are the rows with a binary label, in the order ``load_labelled`` gives them.
    """

    series_uid: list[str]
    source_path: dict[str, Path]
    subset: list[str]
    patient_id: list[str | None]
    center_xyz: list[tuple[float, float, float]]
    diameter_mm: F64
    targets: F64
    """(N, 9) readers' mean ratings; NaN rows for nodules without reads."""
    labelled: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.series_uid)


def load_rated(data_dir: Path) -> RatedSet:
    """The set's nodules with a scan (``labels.csv``) and their readers' mean ratings."""
    series = find_series(data_dir)
    rows = [n for n in read_labels(data_dir / "labels.csv") if n.series_uid in series]
    return RatedSet(
        series_uid=[n.series_uid for n in rows],
        source_path={n.series_uid: series[n.series_uid] for n in rows},
        subset=[series[n.series_uid].parent.name for n in rows],
        patient_id=[n.patient_id for n in rows],
        center_xyz=[n.center_xyz for n in rows],
        diameter_mm=np.array([n.diameter_mm for n in rows], dtype=np.float64),
        targets=mean_ratings([reader_matrix(n.characteristics) for n in rows]),
        labelled=np.array(
            [i for i, n in enumerate(rows) if n.label.label_binary is not None], dtype=np.int64
        ),
    )


@dataclass(frozen=True)
class RatedCut:
    """Every row's patch (the model's spec) and profile at its recorded diameter."""

    patches: npt.NDArray[np.float32]
    profiles: F64


def cut_rated(rated: RatedSet, spec: PatchSpec, workers: int) -> RatedCut:
    """Patches and profiles of every row, one region-read pass per scan.

    Raises:
        RatedSetError: a scan cannot be read.
    """
    by_scan: dict[str, list[int]] = defaultdict(list)
    for i, uid in enumerate(rated.series_uid):
        by_scan[uid].append(i)
    jobs = [
        ScanJob(
            uid,
            rated.source_path[uid],
            [rated.center_xyz[i] for i in at],
            spec,
            profile_diameters_mm=[float(rated.diameter_mm[i]) for i in at],
        )
        for uid, at in sorted(by_scan.items())
    ]
    patches = np.zeros((len(rated), *spec.patch_shape_zyx), dtype=np.float32)
    profiles = np.full((len(rated), len(PROFILE_NAMES)), np.nan)
    for result in iter_scan_patches(jobs, workers):
        if result.patches is None or result.profiles is None:
            raise RatedSetError(f"scan {result.key} cannot be read ({result.error})")
        at = by_scan[result.key]
        patches[at], profiles[at] = result.patches, result.profiles
    return RatedCut(patches, profiles)


def profiles_at(
    rated: RatedSet, rows: Sequence[int], diameters_mm: Sequence[float], spec: PatchSpec
) -> F64:
    """Profiles of ``rows`` at other diameters (the service's estimates); NaN where none.

    A row whose diameter is NaN (no estimate) gets a NaN profile: it is searched without size.
    """
    out = np.full((len(rows), len(PROFILE_NAMES)), np.nan)
    by_scan: dict[str, list[int]] = defaultdict(list)
    for k, i in enumerate(rows):
        if np.isfinite(diameters_mm[k]):
            by_scan[rated.series_uid[i]].append(k)
    for uid, at in sorted(by_scan.items()):
        source = open_source(rated.source_path[uid])
        for k in at:
            try:
                profile = nodule_profile(
                    source, rated.center_xyz[rows[k]], float(diameters_mm[k]), spec
                )
            except ProfileError:
                continue
            out[k] = profile.values
    return out
