"""The service's masks against a set's reference masks (``indexer.evaluate.mask_quality``)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from indexer.evaluate import markdown
from indexer.evaluate.loading import cut_patches, load_nodules
from indexer.evaluate.mask_quality import (
    NoduleMaskScore,
    read_reference,
    reference_mask_path,
    reference_nodule,
    region_dice,
    summarize,
)
from model.clinical.measure import NoduleRegion, measure
from model.clinical.nodule_mask import find_nodule
from model.ct.geometry import Geometry
from model.ct.open import open_source
from model.nn.embedder import Embedder
from model.store.catalog import Catalog


def _region(mask_zyx: np.ndarray, start_zyx: tuple[int, int, int]) -> NoduleRegion:
    nz, ny, nx = mask_zyx.shape
    box = Geometry.from_itk((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), np.eye(3), (nx, ny, nz))
    return NoduleRegion(mask_zyx, start_zyx, box, measure(mask_zyx, box))


def test_region_dice_places_the_box_on_the_scan() -> None:
    reference = np.zeros((10, 10, 10), dtype=bool)
    reference[2:6, 2:6, 2:6] = True  # 64 voxels
    box = np.zeros((4, 4, 4), dtype=bool)
    box[:, :, :2] = True  # 32 voxels at x 4..5 of the scan when the box starts at (2, 2, 4)
    assert region_dice(_region(box, (2, 2, 4)), reference) == pytest.approx(2 * 32 / 96)
    assert region_dice(_region(box, (6, 6, 6)), reference) == 0.0
    assert region_dice(None, reference) is None


def _score(d: float, net: float | None, grown: float | None) -> NoduleMaskScore:
    return NoduleMaskScore(
        d, net, None if net is None else d + 1, grown, None if grown is None else d
    )


def test_a_refusal_counts_zero_and_region_growing_better_is_named_by_group() -> None:
    scores = [
        _score(4.0, 0.9, None),  # small: region growing refuses, the branch answers
        _score(5.0, 0.8, None),
        _score(5.5, 0.7, 0.75),  # one pair is no evidence: no interval
        _score(12.0, 0.70, 0.90),  # 10-20 mm: region growing higher on every pair
        _score(15.0, 0.72, 0.88),
        _score(18.0, None, 0.85),
        _score(7.0, 0.80, 0.90),  # 6-10 mm: higher median, but not on every pair
        _score(8.0, 0.85, 0.60),
        _score(9.0, 0.80, 0.95),
    ]
    quality = summarize(scores)
    assert quality is not None
    assert quality.network.share_with_mask == pytest.approx(8 / 9)
    assert quality.region_growing.share_with_mask == pytest.approx(7 / 9)
    # 0, 0, .6, .75, .85, .88, .9, .9, .95
    assert quality.region_growing.dice_median == pytest.approx(0.85)
    assert quality.region_growing.dice_median_of_masked == pytest.approx(0.88)
    assert quality.network.diameter_mean_signed_diff_mm == pytest.approx(1.0)
    assert quality.region_growing_better_in == ["10-20 mm"]
    group = quality.by_diameter["10-20 mm"]
    assert group.n_grown == 3
    assert group.network_dice_median_where_grown == pytest.approx(0.70)  # .7, .72, 0 (refused)
    assert group.grown_minus_network_dice == pytest.approx((0.2 + 0.16 + 0.85) / 3)
    assert quality.by_diameter["0-6 mm"].grown_minus_network_dice_ci95 is None
    assert not quality.by_diameter["6-10 mm"].region_growing_better
    assert ">= 20 mm" not in quality.by_diameter
    # By the branch's own diameter (its diameter + 1 here), what the service can act on: the
    # 9 mm nodule the branch calls 10 mm joins the 10-20 mm group, which still favours growing.
    assert quality.by_branch_diameter["10-20 mm"].n_grown == 3
    assert quality.policy_region_growing_mm == [(10.0, 20.0)]
    text = "\n".join(markdown.mask_quality_lines(quality))
    assert "a diameter-error interval not above zero): 10-20 mm." in text
    assert (
        "The mask policy this supports (region growing where the branch measures): 10-20 mm."
        in text
    )
    assert summarize([]) is None
    assert markdown.mask_quality_lines(None) == []


@pytest.fixture(scope="module")
def seg_rows(seg_index: Path, seg_model: Path):  # type: ignore[no-untyped-def]
    catalog = Catalog.open(seg_index)
    nodules = load_nodules(catalog, None)
    catalog.close()
    rows = np.arange(min(8, len(nodules.ids)), dtype=np.int64)
    return nodules, rows, Embedder.from_model_dir(seg_model, "cpu")


def test_the_service_masks_are_scored_against_the_rendered_outlines(seg_rows) -> None:  # type: ignore[no-untyped-def]
    nodules, rows, embedder = seg_rows
    cut = cut_patches(nodules, rows, embedder, workers=1)
    # Every row's scan has the generator's outlines; a nodule far from every outline is not
    # scored, so most are.
    assert len(cut.mask_scores) >= len(rows) - 2
    quality = summarize(cut.mask_scores)
    assert quality is not None
    assert quality.region_growing.n == quality.network.n
    # The references lie on the nodules: region growing overlaps them well where it answers.
    grown = quality.region_growing.dice_median_of_masked
    assert grown is not None
    assert grown > 0.3
    # The test model's "branch" is a bare HU threshold: its component at the point runs into
    # the vessels and the wall (tens of mm), and the comparison shows region growing closer.
    assert quality.network.share_with_mask == 1.0
    assert quality.network.diameter_mean_signed_diff_mm is not None
    assert quality.network.diameter_mean_signed_diff_mm > 10.0
    assert quality.network.dice_median_of_masked is not None
    assert quality.network.dice_median_of_masked < grown


def test_one_score_matches_the_masks_pasted_on_the_scan(seg_rows) -> None:  # type: ignore[no-untyped-def]
    nodules, rows, embedder = seg_rows
    r = int(rows[0])
    uid, center = nodules.series_uid[r], nodules.center_xyz[r]
    path = nodules.source_path[uid]
    found = find_nodule(embedder, open_source(path), center)
    assert found is not None
    reference_volume = read_reference(reference_mask_path(path, uid))
    assert reference_volume is not None
    reference = reference_nodule(reference_volume, center)
    assert reference is not None
    pasted = np.zeros_like(reference)
    (z0, y0, x0), (dz, dy, dx) = found.region.start_zyx, found.region.mask_zyx.shape
    pasted[z0 : z0 + dz, y0 : y0 + dy, x0 : x0 + dx] = found.region.mask_zyx
    expected = 2 * int((pasted & reference).sum()) / int(pasted.sum() + reference.sum())
    cut = cut_patches(nodules, rows[:1], embedder, workers=1)
    assert cut.mask_scores[0].network_dice == pytest.approx(expected)


def test_a_set_without_reference_masks_scores_nothing(  # type: ignore[no-untyped-def]
    seg_rows, tmp_path: Path
) -> None:
    nodules, rows, embedder = seg_rows
    uid = nodules.series_uid[int(rows[0])]
    path = nodules.source_path[uid]
    copied = tmp_path / "set" / path.parent.name
    copied.mkdir(parents=True)
    for part in path.parent.glob(f"{uid}.*"):
        shutil.copy(part, copied / part.name)
    only = np.array([r for r in rows.tolist() if nodules.series_uid[r] == uid], dtype=np.int64)
    nodules.source_path[uid] = copied / path.name
    try:
        cut = cut_patches(nodules, only, embedder, workers=1)
    finally:
        nodules.source_path[uid] = path
    assert cut.mask_scores == []
    assert not np.isnan(cut.descriptors).all()  # still measured, only not scored


def test_the_policy_is_measured_on_each_fold_as_its_other_folds_chose_it() -> None:
    # Two folds: in both, growing is better on every 10-20 mm pair; so each fold is measured
    # under "10-20 mm" chosen on the other, and there growing's Dice replaces the branch's.
    scores = [
        replace(_score(d, net, grown), fold=fold)
        for fold in (0, 1)
        for d, net, grown in (
            (12.0, 0.60, 0.90),
            (14.0, 0.62, 0.85),
            (15.0, 0.58, 0.88),
            (4.0, 0.8, None),
        )
    ]
    quality = summarize(scores)
    assert quality is not None
    assert quality.policy_per_fold_mm == [[(10.0, 20.0)], [(10.0, 20.0)]]
    nested = quality.policy_cross_validated
    assert nested is not None
    # Per fold: growing's .90/.85/.88 for the 10-20 mm nodules, the branch's .8 for the 4 mm.
    assert nested.dice_median == pytest.approx(0.865)
    assert nested.share_with_mask == 1.0
    assert "chosen on the other folds" in "\n".join(markdown.mask_quality_lines(quality))
    # Outside crossval (no folds) there is no such row.
    plain = summarize([replace(s, fold=None) for s in scores])
    assert plain is not None
    assert plain.policy_cross_validated is None
    assert _score(12.0, 0.6, 0.9).under_policy([]) == (0.6, 13.0)
    assert _score(12.0, None, 0.9).under_policy([]) == (0.9, 12.0)


def test_a_higher_dice_with_a_worse_diameter_is_not_better() -> None:
    # Region growing overlaps the reference better on every pair but misses the diameter by
    # 5 mm where the branch misses it by 1: the size estimate shows the diameter, so no.
    scores = [
        NoduleMaskScore(d, 0.70, d + 1.0, 0.90, d + 5.0) for d in (11.0, 12.0, 14.0, 16.0, 18.0)
    ]
    quality = summarize(scores)
    assert quality is not None
    group = quality.by_diameter["10-20 mm"]
    assert group.grown_minus_network_dice == pytest.approx(0.2)
    assert group.grown_minus_network_abs_error_mm == pytest.approx(4.0)
    assert not group.region_growing_better
    assert quality.policy_region_growing_mm == []
