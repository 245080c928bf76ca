"""Label derivation rules (model/clinical/labels.py)."""

from __future__ import annotations

import pytest

from model.clinical.labels import (
    CHARACTERISTICS,
    RATING_RANGES,
    SCALES,
    Characteristics,
    ExcludeThree,
    LabelRule,
    derive_label,
    texture_type,
)

PAPER = LabelRule()


@pytest.mark.parametrize(
    ("ratings", "binary", "four"),
    [
        ([1, 1, 2], 0, 1),
        ([2, 2, 2, 1], 0, 2),
        ([2, 2, 3, 3], 0, 2),  # mean 2.5 rounds half to even -> 2 (kept, benign)
        ([3, 3, 4, 4], 1, 4),  # mean 3.5 -> 4 (kept, malignant)
        ([4, 5, 5], 1, 5),
        ([5, 5, 5, 4], 1, 5),
        ([4, 4, 5, 5], 1, 4),  # mean 4.5 -> 4 (half to even)
    ],
)
def test_paper_rule_labels(ratings: list[int], binary: int, four: int) -> None:
    label = derive_label(ratings, PAPER)
    assert label.label_binary == binary
    assert label.label_4class == four
    assert label.mean_malignancy == pytest.approx(sum(ratings) / len(ratings))
    assert label.n_readers == len(ratings)
    assert label.excluded_reason is None


@pytest.mark.parametrize("ratings", [[3, 3, 3], [2, 3, 4], [2, 3, 3, 4], [3, 3, 4], [2, 3, 3, 3]])
def test_paper_rule_drops_means_that_round_to_three(ratings: list[int]) -> None:
    label = derive_label(ratings, PAPER)
    assert label.label_binary is None
    assert label.label_4class is None
    assert label.excluded_reason == "mean malignancy rounds to 3"


def test_min_readers() -> None:
    assert derive_label([5, 5], PAPER).excluded_reason == "fewer than 3 readers"
    assert derive_label([5, 5], LabelRule(min_readers=2)).label_binary == 1
    assert derive_label([], PAPER).mean_malignancy is None


def test_mean_equals_three_rule_keeps_near_three() -> None:
    rule = LabelRule(exclude_three=ExcludeThree.MEAN_EQUALS_THREE)
    assert derive_label([3, 3, 3], rule).label_binary is None
    near = derive_label([2, 3, 3], rule)  # mean 2.67: benign side of 3
    assert (near.label_binary, near.label_4class) == (0, 2)
    above = derive_label([3, 3, 4], rule)
    assert (above.label_binary, above.label_4class) == (1, 4)


def test_bad_ratings_are_refused() -> None:
    with pytest.raises(ValueError, match=r"1\.\.5"):
        derive_label([0, 3, 4], PAPER)
    with pytest.raises(ValueError, match="calcification"):
        Characteristics(3, 1, 7, 3, 3, 3, 3, 3, 3)
    with pytest.raises(ValueError, match="malignancy"):
        Characteristics(3, 1, 6, 3, 3, 3, 3, 3, 6)


@pytest.mark.parametrize(
    ("texture", "kind"),
    [
        (1, "ground-glass"),
        (2, "ground-glass"),
        (2.5, "part-solid"),
        (3, "part-solid"),
        (4, "part-solid"),
        (4.5, "part-solid"),
        (5, "solid"),
    ],
)
def test_texture_type_is_the_protocols_rule(texture: float, kind: str) -> None:
    """1-2 ground-glass, 3-4 part-solid, 5 solid (docs/protocol.md); medians fall in between."""
    assert texture_type(texture) == kind


def test_every_characteristic_has_its_scale() -> None:
    assert list(SCALES) == list(CHARACTERISTICS)
    for name, (low, high) in RATING_RANGES.items():
        assert low == 1
        assert len(SCALES[name]) == high, name
