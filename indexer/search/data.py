"""The rated nodules of a LUNA16-layout set: what the search space is fitted and chosen on."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from indexer.data.luna import find_series
from indexer.data.patches import ScanJob, iter_scan_patches
from indexer.data.synth.heldout import HELDOUT_PATIENTS
from indexer.evaluate.alike import mean_ratings, reader_matrix
from indexer.labels.build import read_labels
from model.ct.open import open_source
from model.nn.profile import PROFILE_NAMES, ProfileError, nodule_profile
from model.preprocessing import PatchSpec

logger = logging.getLogger(__name__)

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


def load_rated(data_dir: Path, labels: Path | None = None) -> RatedSet:
    """The set's nodules with a scan and their readers' mean ratings.

    ``labels``: the labels file (default ``data_dir/labels.csv``).

    The held-out patients (``indexer.data.synth.heldout``) are left out whatever the set holds:
    they judge the work from outside, so no search space is ever fitted or chosen on them.
    """
    series = find_series(data_dir)
    table = labels if labels is not None else data_dir / "labels.csv"
    rows = [n for n in read_labels(table) if n.series_uid in series]
    held_out = [n for n in rows if n.patient_id in HELDOUT_PATIENTS]
    if held_out:
        logger.warning("left out %d nodules of held-out patients", len(held_out))
        rows = [n for n in rows if n.patient_id not in HELDOUT_PATIENTS]
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
    paths: Sequence[Path],
    centers_xyz: Sequence[tuple[float, float, float]],
    diameters_mm: Sequence[float],
    spec: PatchSpec,
) -> F64:
    """Profiles of points (each with its scan's path) at given diameters; NaN where none.

    For the service's estimates: a point whose diameter is NaN (no estimate) gets a NaN
    profile, and is searched without size. Each scan is opened once.
    """
    out = np.full((len(paths), len(PROFILE_NAMES)), np.nan)
    by_scan: dict[Path, list[int]] = defaultdict(list)
    for k, path in enumerate(paths):
        if np.isfinite(diameters_mm[k]):
            by_scan[path].append(k)
    for path, at in sorted(by_scan.items()):
        source = open_source(path)
        for k in at:
            try:
                profile = nodule_profile(source, centers_xyz[k], float(diameters_mm[k]), spec)
            except ProfileError:
                continue
            out[k] = profile.values
    return out
