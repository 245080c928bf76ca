"""``nodule-index import-crops``: nodule-centred CT crops into the LUNA16 layout and ``labels.csv``.

Many public nodule sets come as one small volume per nodule plus a table (LIDC VOIs, LUNA22/23
ISMI, LNDb crops, course sets). This turns such a collection into what ``build``, ``evaluate``
and ``train`` read, so they run on it unchanged::

    OUT/subset<k>/<crop id>.mhd + .raw   each crop as a MetaImage in the ITK/LPS world frame
    OUT/annotations.csv                  one row per crop: its nodule's world centre and diameter
    OUT/candidates_V2.csv                class 1 at every nodule centre (positives for training)
    OUT/seriesuids.csv, OUT/patients.csv crop ids; crop id -> patient
    OUT/labels.csv                       the readers' malignancy ratings and derived labels, and
                                         the table's consensus characteristic ratings
    OUT/nodule_masks/<crop id>.mhd       each crop's nodule mask, where the table names one
    OUT/crops.json                       the source table's checksum, counts, the column mapping

Each crop is its own "series" (named by its id, so two crops of one CT never collide), and the
subset is a function of the patient: every crop of a patient lands in the same subset, so
subsets are patient-grouped folds. Images are read through the project's one reader
(``model.ct.open``: NIfTI via SimpleITK into LPS, MetaImage), never by hand.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import re
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from indexer.data.luna import (
    LunaPoint,
    nodule_mask_path,
    write_annotations,
    write_candidates,
    write_table,
)
from indexer.data.synth.heldout import HELDOUT_PATIENTS
from indexer.labels.build import write_labels
from model.clinical.labels import (
    CHARACTERISTICS,
    Characteristics,
    LabelRule,
    NoduleLabel,
    derive_label,
)
from model.ct.geometry import Geometry
from model.ct.itk import write_metaimage
from model.ct.open import load_volume
from model.ct.volume import VolumeReadError

logger = logging.getLogger(__name__)

#: Characters allowed in a crop id (it becomes a file name and the layout's series id).
_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")


class CropImportError(ValueError):
    """The crop table or an image is missing or malformed (message names which)."""


@dataclass(frozen=True)
class CropColumns:
    """Names of the table's columns; the defaults are those of the LIDC VOIs' ``nodules.csv``."""

    image: str = "image"
    mask: str = "mask"
    """The nodule's mask on the crop's grid (optional column; an empty cell: none)."""
    patient: str = "patient_id"
    x: str = "coordX"
    y: str = "coordY"
    z: str = "coordZ"
    diameter: str = "diameter_mm"
    ratings: str = "dlwpt_mal_details"
    """Every reader's malignancy rating, as a list ``[5, 4, 5]`` or ``5;4;5``."""
    characteristics: str = "{Name}_value"
    """The 9 LIDC ratings' columns, ``{Name}`` the capitalised LIDC name (``Subtlety_value``,
    ``InternalStructure_value``, ...): one consensus vector (the VOI table keeps no reader's
    own). A table without them imports without characteristics."""

    def characteristic_columns(self) -> dict[str, str]:
        """LIDC name -> the table's column."""
        return {
            name: self.characteristics.format(Name=name[0].upper() + name[1:])
            for name in CHARACTERISTICS
        }


@dataclass(frozen=True)
class Crop:
    """One row of the crop table."""

    crop_id: str
    image: Path
    patient_id: str
    center_xyz: tuple[float, float, float]
    """Nodule centre, world mm (ITK/LPS, as LUNA16's coordX, coordY, coordZ)."""
    diameter_mm: float
    ratings: tuple[int, ...]
    characteristics: tuple[Characteristics, ...] = ()
    """The table's consensus ratings (one vector), or none."""
    mask: Path | None = None
    """The nodule's mask image, or none."""


def _characteristics(
    row: dict[str, str], columns: CropColumns, line: int
) -> tuple[Characteristics, ...]:
    """The row's consensus ratings; none when the table lacks a column or a cell is empty."""
    cells = {
        name: (row.get(col) or "").strip() for name, col in columns.characteristic_columns().items()
    }
    if not all(cells.values()):
        return ()
    try:
        return (Characteristics.from_mapping({k: int(float(v)) for k, v in cells.items()}),)
    except ValueError as e:
        raise CropImportError(f"line {line}: characteristic ratings: {e}") from None


def _ratings(text: str, line: int) -> tuple[int, ...]:
    values = [v for v in re.split(r"[\s,;\[\]]+", text.strip()) if v]
    try:
        ratings = tuple(int(float(v)) for v in values)
    except ValueError:
        raise CropImportError(f"line {line}: ratings {text!r} are not numbers") from None
    if any(not 1 <= r <= 5 for r in ratings):
        raise CropImportError(f"line {line}: malignancy ratings must be 1..5, got {text!r}")
    return ratings


def _float(row: dict[str, str], column: str, line: int) -> float:
    try:
        value = float(row[column])
    except KeyError:
        raise CropImportError(f"line {line}: no column {column!r}") from None
    except ValueError:
        raise CropImportError(f"line {line}: {column} {row[column]!r} is not a number") from None
    if not math.isfinite(value):
        raise CropImportError(f"line {line}: {column} is not finite")
    return value


def _inside(images: Path, cell: str | None, line: int, what: str) -> Path:
    """A table's relative path, which must stay inside the images folder."""
    relative = (cell or "").strip()
    path = (images / relative).resolve()
    if not relative or not path.is_relative_to(images.resolve()):
        raise CropImportError(f"line {line}: {what} {relative!r} is not inside {images}")
    return path


def read_crop_table(csv_path: Path, images: Path, columns: CropColumns) -> list[Crop]:
    """The crops of a table; image paths are relative to ``images``.

    Raises:
        CropImportError: a missing file or column, a bad value, a duplicate crop.
    """
    if not csv_path.is_file():
        raise CropImportError(f"{csv_path}: crop table not found")
    crops: list[Crop] = []
    seen: set[str] = set()
    held_out = 0
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        needed = {columns.image, columns.patient, columns.x, columns.y, columns.z}
        missing = sorted(needed - set(reader.fieldnames or ()))
        if missing:
            raise CropImportError(f"{csv_path.name}: missing columns {missing}")
        for line, row in enumerate(reader, start=2):
            image = _inside(images, row.get(columns.image), line, "image")
            relative = (row[columns.image] or "").strip()
            mask_cell = (row.get(columns.mask) or "").strip()
            mask = _inside(images, mask_cell, line, "mask") if mask_cell else None
            crop_id = _SAFE_ID.sub("_", Path(relative).name.split(".")[0]).strip("._")
            if not crop_id or crop_id in seen:
                raise CropImportError(f"line {line}: crop id {crop_id!r} is empty or repeated")
            seen.add(crop_id)
            patient = (row[columns.patient] or "").strip()
            if not patient:
                raise CropImportError(f"line {line}: no patient id (folds are grouped by it)")
            if patient in HELDOUT_PATIENTS:
                # The held-out patients judge the work from outside: never read here.
                held_out += 1
                continue
            diameter = _float(row, columns.diameter, line) if columns.diameter in row else 0.0
            crops.append(
                Crop(
                    crop_id=crop_id,
                    image=image,
                    patient_id=patient,
                    center_xyz=(
                        _float(row, columns.x, line),
                        _float(row, columns.y, line),
                        _float(row, columns.z, line),
                    ),
                    diameter_mm=diameter,
                    ratings=_ratings(row.get(columns.ratings, "") or "", line),
                    characteristics=_characteristics(row, columns, line),
                    mask=mask,
                )
            )
    if held_out:
        logger.info("%s: %d crops of held-out patients left out", csv_path.name, held_out)
    if not crops:
        raise CropImportError(f"{csv_path.name}: no crops")
    return crops


def patient_subset(patient_id: str, n_subsets: int) -> int:
    """The subset (fold) of a patient: a stable hash, the same on every machine and run."""
    digest = hashlib.sha256(patient_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % n_subsets


def _prepare_out(out: Path) -> None:
    """An empty ``out``: an earlier import is replaced, anything else is never written over."""
    if out.exists() and any(out.iterdir()):
        if not (out / "crops.json").is_file():
            raise CropImportError(f"{out} is not empty and holds no crops.json; refusing to write")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _write_crop(crop: Crop, out: Path, n_subsets: int) -> None:
    """Read one crop through the project's reader and write it into its patient's subset."""
    try:
        volume = load_volume(crop.image)
    except VolumeReadError as e:
        raise CropImportError(f"{crop.image.name}: {e}") from None
    if not volume.geometry.contains_world(crop.center_xyz):
        raise CropImportError(
            f"{crop.image.name}: the nodule centre {crop.center_xyz} lies outside the crop"
        )
    # The mask is checked before anything is written: a skipped crop leaves no file behind.
    inside = _read_mask(crop, volume.geometry) if crop.mask is not None else None
    subset = patient_subset(crop.patient_id, n_subsets)
    write_metaimage(volume.hu_zyx, volume.geometry, out / f"subset{subset}" / f"{crop.crop_id}.mhd")
    if inside is not None:
        write_metaimage(inside, volume.geometry, nodule_mask_path(out, crop.crop_id))


def _read_mask(crop: Crop, geometry: Geometry) -> npt.NDArray[np.int16]:
    """The crop's nodule mask (1 inside), which must lie on the crop's own grid."""
    assert crop.mask is not None
    try:
        mask = load_volume(crop.mask)
    except VolumeReadError as e:
        raise CropImportError(f"{crop.mask.name}: {e}") from None
    same_grid = (
        mask.geometry.shape_zyx == geometry.shape_zyx
        and np.allclose(mask.geometry.origin_xyz, geometry.origin_xyz, atol=1e-3)
        and np.allclose(mask.geometry.spacing_xyz, geometry.spacing_xyz, atol=1e-4)
        and np.allclose(mask.geometry.direction_matrix, geometry.direction_matrix, atol=1e-4)
    )
    if not same_grid:
        raise CropImportError(f"{crop.mask.name}: the mask is not on its crop's grid")
    return (np.asarray(mask.hu_zyx) > 0.5).astype(np.int16)


def _write_tables(out: Path, crops: Sequence[Crop], labels: Sequence[NoduleLabel]) -> None:
    """The LUNA16 tables of the imported crops (one scan and one nodule each) and labels.csv."""
    write_annotations(
        out / "annotations.csv",
        (LunaPoint(c.crop_id, c.center_xyz, diameter_mm=c.diameter_mm) for c in crops),
    )
    write_candidates(
        out / "candidates_V2.csv", (LunaPoint(c.crop_id, c.center_xyz, label=1) for c in crops)
    )
    write_table(out / "seriesuids.csv", None, [[c.crop_id] for c in crops])
    patients = [[c.crop_id, c.patient_id, ""] for c in crops]
    write_table(out / "patients.csv", ["seriesuid", "patient_id", "study_uid"], patients)
    write_labels(out / "labels.csv", labels)


def _summary(
    csv_path: Path,
    columns: CropColumns,
    rule: LabelRule,
    crops: Sequence[Crop],
    labels: Sequence[NoduleLabel],
    skipped: dict[str, str],
    n_subsets: int,
) -> dict[str, object]:
    """``crops.json``: the source table's checksum, the options, what was skipped, the counts."""
    kept = [n.label for n in labels if n.label.label_binary is not None]
    per_subset = Counter(str(patient_subset(c.patient_id, n_subsets)) for c in crops)
    return {
        "source": {
            "table": csv_path.name,
            "sha256": hashlib.sha256(csv_path.read_bytes()).hexdigest(),
        },
        "columns": columns.__dict__,
        "label_rule": rule.model_dump(mode="json"),
        "skipped": skipped,
        "counts": {
            "crops": len(crops),
            "skipped": len(skipped),
            "patients": len({c.patient_id for c in crops}),
            "labelled": len(kept),
            "benign": sum(1 for d in kept if d.label_binary == 0),
            "malignant": sum(1 for d in kept if d.label_binary == 1),
            "four_class": dict(sorted(Counter(str(d.label_4class) for d in kept).items())),
            "per_subset": dict(sorted(per_subset.items())),
        },
    }


def import_crops(
    csv_path: Path,
    images: Path,
    out: Path,
    *,
    columns: CropColumns | None = None,
    n_subsets: int = 10,
    rule: LabelRule | None = None,
    skip_bad: bool = False,
) -> dict[str, object]:
    """Write the LUNA16 layout and ``labels.csv`` of a crop collection (module docstring).

    Returns:
        The summary written to ``OUT/crops.json``.

    ``skip_bad``: an unreadable crop, or one whose nodule centre lies outside it (a crop cut
    from the wrong place), is left out and listed in the summary instead of failing the import.

    Raises:
        CropImportError: bad table, an unreadable image or a centre outside its crop (unless
            ``skip_bad``), or an ``out`` that holds something other than an earlier import.
    """
    columns = columns or CropColumns()
    rule = rule or LabelRule()
    crops = read_crop_table(csv_path, images, columns)
    _prepare_out(out)
    written: list[Crop] = []
    skipped: dict[str, str] = {}
    for crop in crops:
        try:
            _write_crop(crop, out, n_subsets)
        except CropImportError as e:
            if not skip_bad:
                raise CropImportError(f"{e} (--on-error skip leaves such crops out)") from None
            # Not the message: crop file names may carry patient ids; crops.json lists them.
            logger.warning("a crop was skipped (%d so far; see crops.json)", len(skipped) + 1)
            skipped[crop.crop_id] = str(e)
            continue
        written.append(crop)
    labels = [
        NoduleLabel(
            series_uid=c.crop_id,
            patient_id=c.patient_id,
            center_xyz=c.center_xyz,
            diameter_mm=c.diameter_mm,
            label=derive_label(c.ratings, rule),
            characteristics=c.characteristics,
        )
        for c in written
    ]
    _write_tables(out, written, labels)
    summary = _summary(csv_path, columns, rule, written, labels, skipped, n_subsets)
    (out / "crops.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary
