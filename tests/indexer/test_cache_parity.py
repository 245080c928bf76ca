"""The training cache holds the patches ``extract_patch`` cuts: its float16 crops (without a
shift) equal the one patch function's output at the same centre, to float16 precision."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from indexer.data.luna import find_series
from indexer.train.samples import PatchCache, Sample
from model.ct.open import open_volume
from model.preprocessing import DEFAULT_SPEC, extract_patch


def _samples(synth_set: Path, n: int) -> list[Sample]:
    with (synth_set / "candidates_V2.csv").open() as f:
        rows = list(csv.DictReader(f))
    picked = rows[:: max(1, len(rows) // n)][:n]
    return [
        Sample(
            series_uid=r["seriesuid"],
            center_xyz=(float(r["coordX"]), float(r["coordY"]), float(r["coordZ"])),
            label=int(r["class"]),
            subset="",
        )
        for r in picked
    ]


def test_training_cache_crops_equal_extract_patch(synth_set: Path, tmp_path: Path) -> None:
    samples = _samples(synth_set, 12)
    spec = DEFAULT_SPEC  # what the default model trains with
    cache = PatchCache.build_or_open(
        tmp_path, synth_set, samples, spec, margin=2, fingerprint="parity", progress=False
    )
    series = find_series(synth_set)
    for i, sample in enumerate(samples):
        expected = extract_patch(open_volume(series[sample.series_uid]), sample.center_xyz, spec)
        cached = cache.crop(i)
        assert cached.shape == spec.patch_shape_zyx
        # float16 keeps 11 significant bits: 2^-11 of values in [0, 1].
        np.testing.assert_allclose(cached, expected, atol=2**-11, rtol=0)
    # A shift by whole voxels is the patch of a centre moved by that many voxels of spacing.
    moved = np.asarray(samples[0].center_xyz) + np.array([0.0, 0.0, spec.spacing_mm])
    shifted = cache.crop(0, shift_zyx=(1, 0, 0))
    source = open_volume(series[samples[0].series_uid])
    np.testing.assert_allclose(shifted, extract_patch(source, moved, spec), atol=2**-11, rtol=0)
