"""Does the 2-D max-slice table teach the learned block more than the VOIs alone? (issue 29)

The learned block (``model.nn.search_space``) maps a nodule to the readers' 9 characteristic
ratings. The VOIs give it about 300 rated 3-D nodules of allowed patients; ``lidc_maxslice/``
gives 1,467 more rated nodules of allowed patients, but as one 2-D axial slice each (a 71x71
crop centred on the nodule). The bridge tried here: a *plane profile*, the profile of
``model.nn.profile`` read on the axial plane through the centre (disk instead of ball, 32 in-plane
rays instead of 64 in space), which a max slice and a 3-D nodule (the central plane of its
profile grid) both have. A ridge regression from the z-scored plane profile to the z-scored
mean ratings is trained on the VOIs alone, the max slices alone, or both, and its predictions
search the VOIs (inverse stereographic block, cosine), patient-grouped: for each of the
cross-validation's folds (``nodule-index crossval``'s, subsets dealt round-robin) neither the
fold's VOIs nor any max slice of a patient of that fold trains its regression.

Held-out patients (``indexer.data.synth.heldout``) are filtered from the table before any crop is
unpacked; their files are never extracted.

    python -m bench.bench_maxslice_transfer [--shared ../shared/data] [--data data/real-ins]
        [--out bench/results/maxslice_transfer.json]
"""

from __future__ import annotations

import argparse
import csv
import logging
import re
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from scipy import ndimage

from bench.common import cpu_model, now_utc, write_results
from indexer.crossval.folds import fold_subsets
from indexer.data.synth.heldout import HELDOUT_PATIENTS
from indexer.search.data import RatedSet, load_rated
from model.clinical.labels import CHARACTERISTICS
from model.ct.open import open_source
from model.nn.profile import (
    CALCIUM_HU,
    LOW_HU,
    LUNG_HU,
    MAX_DIAMETER_MM,
    MIN_DIAMETER_MM,
    OPEN_RAY,
    RAY_REACH,
    RAY_STEP,
    profile_spec,
)
from model.nn.search_space import Standardizer
from model.preprocessing import DEFAULT_SPEC, patch_hu

logger = logging.getLogger("bench.maxslice_transfer")

F64 = npt.NDArray[np.float64]
TABLE = "lidc_maxslice/LIDC_20130817_AllFeatures2D_MaxSlicePerNodule_inLineRatings.csv"
CROPS = "lidc_maxslice/mtzig_LIDC_MaxSlices_Nodules_71x71_txt.tar.xz"
DICOMS = "lidc_maxslice/depaul_nodules_MaxSlice_Subset_2688_dicom.tar.xz"
N_RAYS = 32
ALPHAS = (1.0, 10.0, 100.0)
SOURCES = ("vois", "maxslice", "both")


def _disk() -> F64:
    axis = np.arange(-1.0, 1.0 + 1e-9, 0.0625)
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    return np.asarray(grid[np.linalg.norm(grid, axis=1) <= 1.0])


DISK = _disk()
ANGLES = (np.arange(N_RAYS) + 0.5) * 2 * np.pi / N_RAYS
RAYS = np.stack([np.sin(ANGLES), np.cos(ANGLES)], axis=1)  # (y, x)
RADII = np.arange(0.0, RAY_REACH + 1e-9, RAY_STEP)


def plane_profile(hu_yx: F64, spacing_mm: float, centre_yx: F64, diameter_mm: float) -> F64:
    """``model.nn.profile``'s 15 numbers on one axial plane (disk and in-plane rays)."""
    diameter = float(np.clip(diameter_mm, MIN_DIAMETER_MM, MAX_DIAMETER_MM))
    radius = diameter / 2.0

    def sample(points_mm: F64) -> F64:
        index = (points_mm / spacing_mm + centre_yx).T
        return np.asarray(
            ndimage.map_coordinates(hu_yx, index, order=1, mode="nearest", prefilter=False)
        )

    disk = sample(DISK * radius)
    p10, p50, p90, p98 = np.percentile(disk, [10.0, 50.0, 90.0, 98.0])
    along = sample((RAYS[:, None, :] * (RADII[None, :, None] * radius)).reshape(-1, 2))
    along = along.reshape(N_RAYS, len(RADII))
    rim = along[:, (RADII >= 1.0) & (RADII <= 1.5)]
    threshold = (max(p50, LUNG_HU + 100.0) + LUNG_HU) / 2.0
    below = (along < threshold) & (RADII[None, :] >= 0.25)
    first = np.where(below.any(axis=1), RADII[np.argmax(below, axis=1)], RAY_REACH)
    mean = float(first.mean())
    return np.array(
        [
            np.log(diameter),
            disk.mean() / 1000,
            p10 / 1000,
            p50 / 1000,
            p90 / 1000,
            p98 / 1000,
            np.mean(disk >= CALCIUM_HU),
            np.mean(disk <= LOW_HU),
            along[:, np.argmin(np.abs(RADII - 1.0))].mean() / 1000,
            along[:, np.argmin(np.abs(RADII - 1.5))].mean() / 1000,
            mean,
            first.std() / max(mean, RAY_STEP),
            first.min() / max(float(first.max()), RAY_STEP),
            np.mean(first >= OPEN_RAY),
            rim.mean(axis=1).std() / 1000,
        ]
    )


@dataclass(frozen=True)
class Slices:
    """The allowed max slices: each one's patient, plane profile and readers' mean ratings."""

    patient: list[str]
    profiles: F64
    targets: F64


def _allowed_rows(shared: Path) -> list[dict[str, str]]:
    """Table rows of allowed patients (the patient is in the XML path the row came from)."""
    with (shared / TABLE).open(newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        found = re.search(r"LIDC-IDRI-\d{4}", row["FilePath"])
        if found is not None and found.group(0) not in HELDOUT_PATIENTS:
            out.append({**row, "patient": found.group(0)})
    return out


def _extract(archive: Path, wanted: set[str], into: Path) -> dict[str, Path]:
    """The members whose base name is in ``wanted`` (others are never unpacked)."""
    found = {}
    with tarfile.open(archive) as tar:
        for member in tar:
            name = Path(member.name).name
            if member.isfile() and name in wanted:
                tar.extract(member, into, filter="data")
                found[name] = into / member.name
    return found


def _mean_ratings(row: dict[str, str]) -> F64:
    """Each characteristic's mean over the readers who rated it (``<Name>_1..4``, 0: none)."""
    out = []
    for name in CHARACTERISTICS:
        column = name[0].upper() + name[1:]
        values = [float(row[f"{column}_{k}"] or 0) for k in range(1, 5)]
        rated = [v for v in values if v > 0]
        out.append(np.mean(rated) if rated else np.nan)
    return np.array(out)


def load_slices(shared: Path) -> Slices:
    """Plane profiles of the allowed max slices at their contour's equivalent diameter."""
    rows = _allowed_rows(shared)
    with tempfile.TemporaryDirectory(prefix="maxslice-") as tmp:
        crops = _extract(shared / CROPS, {f"{r['noduleID']}.txt" for r in rows}, Path(tmp))
        dicoms = _extract(shared / DICOMS, {f"{r['InstanceID']}.dcm" for r in rows}, Path(tmp))
        patients, profiles, targets = [], [], []
        for row in rows:
            crop, header = (
                crops.get(f"{row['noduleID']}.txt"),
                dicoms.get(f"{row['InstanceID']}.dcm"),
            )
            if crop is None or header is None:
                continue
            intercept = float(pydicom.dcmread(header, stop_before_pixels=True).RescaleIntercept)
            hu = np.loadtxt(crop) + intercept
            spacing = float(row["PixelSpacing"])
            centre = (np.asarray(hu.shape, dtype=np.float64) - 1) / 2.0
            diameter = float(row["EquivDiameter"]) * spacing
            patients.append(row["patient"])
            profiles.append(plane_profile(hu, spacing, centre, diameter))
            targets.append(_mean_ratings(row))
    return Slices(patients, np.array(profiles), np.array(targets))


def voi_planes(rated: RatedSet) -> F64:
    """Each VOI's plane profile: the central axial plane of its profile grid."""
    spec = profile_spec(DEFAULT_SPEC.model_copy(update={"outside": "edge"}))
    out = []
    for uid, center, diameter in zip(
        rated.series_uid, rated.center_xyz, rated.diameter_mm, strict=True
    ):
        hu = patch_hu(open_source(rated.source_path[uid]), center, spec).astype(np.float64)
        middle = hu.shape[0] // 2
        plane = (hu[middle - 1] + hu[middle]) / 2.0  # the grid's centre lies between two planes
        centre = (np.asarray(plane.shape, dtype=np.float64) - 1) / 2.0
        out.append(plane_profile(plane, 1.0, centre, float(diameter)))
    return np.array(out)


def _stereo(z: F64) -> F64:
    u = z / np.sqrt(z.shape[1])
    n2 = np.sum(u * u, axis=1, keepdims=True)
    out: F64 = np.concatenate([2 * u, n2 - 1], axis=1) / (n2 + 1)
    return out


def _top1(sims: F64, rows: npt.NDArray[np.bool_], patients: npt.NDArray[Any], y: F64) -> int:
    s = sims.copy()
    s[patients[:, None] == patients[None, :]] = -np.inf
    return int((y[np.argmax(s, axis=1)] == y)[rows].sum())


def measure(shared: Path, data: Path, n_folds: int = 5) -> dict[str, Any]:
    """Top-1 hits of the plane-learned block by training source and ridge strength."""
    rated = load_rated(data)
    slices = load_slices(shared)
    planes = voi_planes(rated)
    subset = np.asarray(rated.subset)
    queries = rated.labelled
    folds = fold_subsets(sorted(set(subset[queries])), n_folds)
    fold = np.array([next((f for f, m in enumerate(folds) if s in m), -1) for s in subset])
    patients = np.asarray(rated.patient_id)
    labels = load_labels(data, rated)
    results: dict[str, Any] = {}
    for source in SOURCES:
        for alpha in ALPHAS:
            hits = np.zeros(2)
            for f in range(n_folds):
                held = set(patients[fold == f])
                x, y = _training_rows(source, slices, planes, rated.targets, fold, f, held)
                scaler, targets = Standardizer.fit(x), Standardizer.fit(y)
                a = scaler.apply(x)
                w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ targets.apply(y))
                u = _stereo(scaler.apply(planes[queries]) @ w)
                sims = u @ u.T
                asked = fold[queries] == f
                hits += [
                    _top1(sims, asked, patients[queries], labels[0]),
                    _top1(sims, asked, patients[queries], labels[1]),
                ]
            results[f"{source}, alpha {alpha:g}"] = {
                "binary_recall_at_1": hits[0] / len(queries),
                "four_class_recall_at_1": hits[1] / len(queries),
                "n_training_rows_last_fold": len(x),
            }
    return {
        "n_queries": len(queries),
        "n_voi_patients": len(set(patients)),
        "n_max_slices": len(slices.patient),
        "n_max_slice_patients": len(set(slices.patient)),
        "folds": [list(m) for m in folds],
        "plane_learned_block_alone": results,
    }


def load_labels(data: Path, rated: RatedSet) -> tuple[F64, F64]:
    """The queries' binary and 4-class labels (``labels.csv``, ``rated.labelled`` order)."""
    from indexer.labels.build import read_labels

    by_key = {
        (n.series_uid, n.center_xyz): n.label
        for n in read_labels(data / "labels.csv")
        if n.label.label_binary is not None
    }
    keys = [(rated.series_uid[i], rated.center_xyz[i]) for i in rated.labelled]
    return (
        np.array([float(by_key[k].label_binary or 0) for k in keys]),
        np.array([float(by_key[k].label_4class or 0) for k in keys]),
    )


def _training_rows(
    source: str,
    slices: Slices,
    planes: F64,
    targets: F64,
    fold: npt.NDArray[np.int64],
    f: int,
    held: set[str],
) -> tuple[F64, F64]:
    """Training rows for fold f: no VOI of the fold, no max slice of a patient of the fold."""
    xs, ys = [], []
    if source in ("maxslice", "both"):
        keep = np.array([p not in held for p in slices.patient])
        keep &= np.all(np.isfinite(slices.targets), axis=1)
        xs.append(slices.profiles[keep])
        ys.append(slices.targets[keep])
    if source in ("vois", "both"):
        keep = (fold != f) & np.all(np.isfinite(targets), axis=1)
        xs.append(planes[keep])
        ys.append(targets[keep])
    return np.concatenate(xs), np.concatenate(ys)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--data", type=Path, default=Path("data/real-ins"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/maxslice_transfer.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = {
        "benchmark": "bench_maxslice_transfer",
        "what": "the learned block from a plane profile, trained on VOIs, max slices or both; "
        "patient-grouped, plain CV (every alpha shown: none is chosen here)",
        "machine": cpu_model(),
        "date": now_utc(),
        **measure(args.shared, args.data),
    }
    write_results(args.out, result)
    for name, r in result["plane_learned_block_alone"].items():
        logger.info(
            "%-22s binary R@1 %.3f  4-class R@1 %.3f",
            name,
            r["binary_recall_at_1"],
            r["four_class_recall_at_1"],
        )


if __name__ == "__main__":
    main()
