"""Cutting the patches of many scans: one region-read pass per scan, in a worker pool.

Shared by the training patch cache and the catalogue build. A bounded window of scans is in
flight, so memory stays flat however many scans a data root holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from indexer import failpoints
from model.clinical.descriptors import DESCRIPTOR_NAMES, describe_grown
from model.clinical.measure import MeasureError, mean_hu_in_sphere
from model.ct.dicomweb import Pacs
from model.ct.open import open_source
from model.ct.pacs import PacsConfig, PacsError
from model.ct.volume import VolumeReadError, VolumeSource
from model.nn.profile import PROFILE_NAMES, ProfileError, nodule_profile
from model.preprocessing import CoordinateOutsideVolumeError, PatchSpec, extract_patch


@dataclass(frozen=True)
class ScanJob:
    """The patches wanted from one scan: centres (world mm, LPS) and the spec."""

    key: str
    path: Path
    centers_xyz: Sequence[tuple[float, float, float]]
    spec: PatchSpec
    pacs: PacsConfig | None = None
    """Where ``dicomweb:`` paths are read from (each worker opens its own connection)."""
    sphere_radii_mm: Sequence[float] | None = None
    """Also the mean HU in a sphere of this radius at each centre (the density baseline)."""
    describe: bool = False
    """Also each nodule's measured descriptors (``model.clinical.descriptors``, region-grown
    mask)."""
    profile_diameters_mm: Sequence[float] | None = None
    """Also each nodule's profile (``model.nn.profile``) at this diameter (the search blocks)."""


@dataclass(frozen=True)
class ScanPatches:
    """The outcome of one job: (n, D, H, W) float32 patches, or the reason there are none."""

    key: str
    patches: npt.NDArray[np.float32] | None
    error: str | None
    mean_hu: npt.NDArray[np.float64] | None = None
    """With ``ScanJob.sphere_radii_mm``: the mean HU in each centre's sphere."""
    descriptors: npt.NDArray[np.float64] | None = None
    """With ``ScanJob.describe``: ``(n, len(DESCRIPTOR_NAMES))``, NaN rows where no mask."""
    profiles: npt.NDArray[np.float64] | None = None
    """With ``ScanJob.profile_diameters_mm``: ``(n, len(PROFILE_NAMES))``."""


def cut_scan(job: ScanJob) -> ScanPatches:
    """Open the scan once and cut all its patches (runs in a worker process)."""
    failpoints.crash_if(f"crop:{job.key}")  # tests: a reader that kills its process
    try:
        source = open_source(job.path, Pacs(job.pacs) if job.pacs else None)
        patches = np.stack([extract_patch(source, c, job.spec) for c in job.centers_xyz])
        mean_hu = None
        if job.sphere_radii_mm is not None:
            pairs = zip(job.centers_xyz, job.sphere_radii_mm, strict=True)
            mean_hu = np.array([mean_hu_in_sphere(source, c, r) for c, r in pairs])
        descriptors = _descriptors(source, job.centers_xyz) if job.describe else None
        profiles = None
        if job.profile_diameters_mm is not None:
            profiles = _profiles(source, job.centers_xyz, job.profile_diameters_mm, job.spec)
    except (VolumeReadError, CoordinateOutsideVolumeError, PacsError, ValueError, OSError) as e:
        return ScanPatches(job.key, None, f"{type(e).__name__}: {e}")
    return ScanPatches(job.key, patches, None, mean_hu, descriptors, profiles)


def _descriptors(
    source: VolumeSource, centers_xyz: Sequence[tuple[float, float, float]]
) -> npt.NDArray[np.float64]:
    """Each centre's measured descriptors; a NaN row where no mask is found there."""
    out = np.full((len(centers_xyz), len(DESCRIPTOR_NAMES)), np.nan)
    for i, center in enumerate(centers_xyz):
        try:
            found = describe_grown(source, center)
        except MeasureError:  # voxels too small to grow in: no mask, as when none is found
            continue
        if found is not None:
            out[i] = found.as_row()
    return out


def _profiles(
    source: VolumeSource,
    centers_xyz: Sequence[tuple[float, float, float]],
    diameters_mm: Sequence[float],
    spec: PatchSpec,
) -> npt.NDArray[np.float64]:
    """Each centre's profile at its diameter.

    A NaN row (no size: the features alone search) where the diameter is unusable (0 or missing
    in an annotation), not a failed scan.
    """
    out = np.full((len(centers_xyz), len(PROFILE_NAMES)), np.nan)
    for i, (center, diameter) in enumerate(zip(centers_xyz, diameters_mm, strict=True)):
        try:
            out[i] = nodule_profile(source, center, diameter, spec).values
        except ProfileError:
            continue
    return out


def iter_scan_patches(jobs: Sequence[ScanJob], workers: int) -> Iterator[ScanPatches]:
    """Results in job order; with ``workers > 1`` at most ``2 * workers`` scans are in flight."""
    if workers <= 1 or len(jobs) <= 1:
        yield from (cut_scan(job) for job in jobs)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        window: list[Future[ScanPatches]] = []
        for job in jobs:
            window.append(pool.submit(cut_scan, job))
            if len(window) >= 2 * workers:
                yield window.pop(0).result()
        for future in window:
            yield future.result()
