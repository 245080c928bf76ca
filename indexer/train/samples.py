"""Training samples from ``candidates_V2.csv``, the scan/patient split, and the on-disk patch cache.

Every candidate patch is cut once, through the one patch function with region reads, and kept in
a float16 memory-mapped array a little larger than the model's patch (the margin allows the small
shifts of augmentation); epochs then read the cache, never the CT.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from indexer.data.luna import (
    NODULE_MASKS_DIR,
    candidates_path,
    find_series,
    nodule_mask_path,
    read_candidates,
)
from indexer.data.patches import ScanJob, iter_scan_patches
from indexer.labels.geometry_sources import read_patient_map
from model.preprocessing import PatchSpec, mask_spec

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Sample:
    """One candidate: a world point in a scan and whether it is a nodule.

    Attributes:
        series_uid: LUNA16 ``seriesuid``.
        center_xyz: world mm (LPS).
        label: 1 nodule, 0 not a nodule (``candidates_V2.csv`` ``class``).
        subset: the LUNA16 subset folder holding the scan (the fold).
    """

    series_uid: str
    center_xyz: tuple[float, float, float]
    label: int
    subset: str


def data_fingerprint(data_dir: Path) -> str:
    """sha256 over the tables, the scans with their sizes, and the nodule masks' contents.

    The tables: annotations and candidates. The masks (``nodule_masks/``) are small and what the
    mask branch learns from, so an edited mask makes a new training run and a new patch cache.
    """
    digest = hashlib.sha256()
    for name in ("annotations.csv", candidates_path(data_dir).name):
        path = data_dir / name
        digest.update(name.encode())
        digest.update(path.read_bytes() if path.is_file() else b"")
    for uid, path in sorted(find_series(data_dir).items()):
        raw = path.with_suffix(".raw")
        size = raw.stat().st_size if raw.is_file() else path.stat().st_size
        digest.update(f"{uid}:{path.parent.name}:{size}".encode())
    masks = data_dir / NODULE_MASKS_DIR
    for path in sorted(masks.iterdir()) if masks.is_dir() else []:
        if path.is_file():
            digest.update(f"{NODULE_MASKS_DIR}/{path.name}:".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def select_samples(data_dir: Path, max_negatives_per_scan: int, seed: int) -> list[Sample]:
    """All positives and up to ``max_negatives_per_scan`` random negatives of every scan present.

    Real LUNA16 has ~750k candidates (~850 a scan); a sample of the negatives keeps the cache and
    the epochs bounded. The sample is a deterministic function of ``seed``.
    """
    series = find_series(data_dir)
    rng = np.random.default_rng(seed)
    by_scan: dict[str, list[Sample]] = defaultdict(list)
    for c in read_candidates(candidates_path(data_dir)):
        if c.series_uid in series:
            label = 1 if c.label == 1 else 0
            by_scan[c.series_uid].append(
                Sample(c.series_uid, c.center_xyz, label, series[c.series_uid].parent.name)
            )
    samples: list[Sample] = []
    for uid in sorted(by_scan):
        scan = by_scan[uid]
        negatives = [s for s in scan if s.label == 0]
        if len(negatives) > max_negatives_per_scan:
            keep = set(rng.choice(len(negatives), max_negatives_per_scan, replace=False).tolist())
            negatives = [s for i, s in enumerate(negatives) if i in keep]
        samples.extend([s for s in scan if s.label == 1] + negatives)
    return samples


def split_by_subset(
    samples: Sequence[Sample], val_subsets: Sequence[str], patients: dict[str, str] | None = None
) -> tuple[list[int], list[int]]:
    """Indices of training and validation samples; no scan or patient is on both sides.

    Validation takes the scans of ``val_subsets``; training the others, minus scans of patients
    that also have a validation scan.
    """
    val = {i for i, s in enumerate(samples) if s.subset in set(val_subsets)}
    if not val:
        raise ValueError(f"no candidates in validation subsets {list(val_subsets)}")
    patients = patients or {}
    val_patients = {
        patients[samples[i].series_uid] for i in val if samples[i].series_uid in patients
    }
    train = [
        i
        for i, s in enumerate(samples)
        if i not in val and patients.get(s.series_uid, f"scan:{s.series_uid}") not in val_patients
    ]
    if not train:
        raise ValueError("no training candidates left outside the validation subsets")
    return train, sorted(val)


def load_patients(data_dir: Path) -> dict[str, str]:
    """Series -> patient from ``patients.csv`` when the data set has one (synthetic sets do)."""
    path = data_dir / "patients.csv"
    return read_patient_map(path) if path.is_file() else {}


class PatchCache:
    """Float16 patches of every sample, ``margin`` voxels larger than the model's on each side.

    Nodules whose scan has a mask (``indexer.data.luna.nodule_mask_path``) also get the mask cut on
    the same grid by the same function (``masks.npy``; ``mask_rows.npy`` maps a sample to its
    row there, -1 for none).
    """

    def __init__(self, folder: Path, spec: PatchSpec, margin: int) -> None:
        self.folder = folder
        self.spec = spec
        self.margin = margin
        self.patches: np.ndarray = np.load(folder / "patches.npy", mmap_mode="r")
        self.masks: np.ndarray = np.load(folder / "masks.npy", mmap_mode="r")
        self.mask_rows: npt.NDArray[np.int64] = np.load(folder / "mask_rows.npy")

    def has_mask(self, index: int) -> bool:
        """Whether sample ``index`` has a nodule mask."""
        return bool(self.mask_rows[index] >= 0)

    def crop_mask(self, index: int, shift_zyx: tuple[int, int, int] = (0, 0, 0)) -> F32:
        """The model-sized mask patch of sample ``index`` (as ``crop``); raises without one."""
        row = int(self.mask_rows[index])
        if row < 0:
            raise KeyError(f"sample {index} has no mask")
        return self._window(self.masks[row], shift_zyx)

    @staticmethod
    def cache_spec(spec: PatchSpec, margin: int) -> PatchSpec:
        """The spec of the stored (larger) patches: same spacing and window, same centre."""
        return spec.model_copy(
            update={"patch_shape_zyx": tuple(n + 2 * margin for n in spec.patch_shape_zyx)}
        )

    @classmethod
    def build_or_open(
        cls,
        cache_root: Path,
        data_dir: Path,
        samples: Sequence[Sample],
        spec: PatchSpec,
        margin: int,
        fingerprint: str,
        workers: int = 1,
        progress: bool = True,
    ) -> PatchCache:
        """Open the cache for (data, samples, spec) or cut every patch once and store it."""
        series = find_series(data_dir)
        with_masks = sorted(
            {s.series_uid for s in samples if s.label == 1}
            & {uid for uid in series if nodule_mask_path(data_dir, uid).is_file()}
        )
        key_text = json.dumps(
            {
                "data": fingerprint,
                "masks": hashlib.sha256(repr(with_masks).encode()).hexdigest(),
                "spec": cls.cache_spec(spec, margin).model_dump(mode="json"),
                "samples": hashlib.sha256(
                    repr([(s.series_uid, s.center_xyz, s.label) for s in samples]).encode()
                ).hexdigest(),
            },
            sort_keys=True,
        )
        key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
        folder = cache_root / key
        if (folder / "meta.json").is_file():
            return cls(folder, spec, margin)
        shutil.rmtree(folder, ignore_errors=True)  # a build killed half-way
        folder.mkdir(parents=True)
        cut = cls.cache_spec(spec, margin)
        indices_by_scan: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(samples):
            indices_by_scan[s.series_uid].append(i)
        jobs = [
            ScanJob(uid, series[uid], [samples[i].center_xyz for i in indices], cut)
            for uid, indices in sorted(indices_by_scan.items())
        ]
        out = np.lib.format.open_memmap(
            folder / "patches.npy",
            mode="w+",
            dtype=np.float16,
            shape=(len(samples), *cut.patch_shape_zyx),
        )
        bar = tqdm(
            total=len(samples),
            desc="cutting patches",
            unit="patch",
            leave=False,
            disable=None if progress else True,
        )
        for result in iter_scan_patches(jobs, workers):
            if result.patches is None:
                raise ValueError(f"scan {result.key} cannot be cut: {result.error}")
            indices = indices_by_scan[result.key]
            out[indices] = result.patches.astype(np.float16)
            bar.update(len(indices))
        bar.close()
        out.flush()
        del out
        _cut_masks(folder, data_dir, samples, set(with_masks), cut, workers)
        (folder / "meta.json").write_text(key_text, encoding="utf-8")
        logger.info("cached %d patches in %s", len(samples), folder)
        return cls(folder, spec, margin)

    def crop(self, index: int, shift_zyx: tuple[int, int, int] = (0, 0, 0)) -> F32:
        """The model-sized patch of sample ``index``, shifted by whole voxels (up to the margin)."""
        return self._window(self.patches[index], shift_zyx)

    def _window(self, stored: np.ndarray, shift_zyx: tuple[int, int, int]) -> F32:
        m = self.margin
        d, h, w = self.spec.patch_shape_zyx
        z, y, x = (m + s for s in shift_zyx)
        return np.asarray(stored[z : z + d, y : y + h, x : x + w], dtype=np.float32)


def _cut_masks(
    folder: Path,
    data_dir: Path,
    samples: Sequence[Sample],
    with_masks: set[str],
    cut: PatchSpec,
    workers: int,
) -> None:
    """``masks.npy`` and ``mask_rows.npy``: the nodules' mask patches (module docstring)."""
    rows = np.full(len(samples), -1, dtype=np.int64)
    wanted = [i for i, s in enumerate(samples) if s.label == 1 and s.series_uid in with_masks]
    rows[wanted] = np.arange(len(wanted))
    masks = np.zeros((len(wanted), *cut.patch_shape_zyx), dtype=np.float16)
    by_scan: dict[str, list[int]] = defaultdict(list)
    for i in wanted:
        by_scan[samples[i].series_uid].append(i)
    spec = mask_spec(cut)
    jobs = [
        ScanJob(uid, nodule_mask_path(data_dir, uid), [samples[i].center_xyz for i in idx], spec)
        for uid, idx in sorted(by_scan.items())
    ]
    for result in iter_scan_patches(jobs, workers):
        if result.patches is None:
            raise ValueError(f"the nodule mask of {result.key} cannot be cut: {result.error}")
        masks[rows[by_scan[result.key]]] = result.patches.astype(np.float16)
    np.save(folder / "masks.npy", masks)
    np.save(folder / "mask_rows.npy", rows)
