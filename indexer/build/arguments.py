"""Arguments of ``nodule-index build | add | verify | versions | rollback`` (light: no builder).

Registering them imports nothing heavy, so ``--help`` and usage errors answer at once; the
commands themselves are in ``indexer.build.command``.
"""

from __future__ import annotations

import argparse
import os

from indexer.cli_paths import Kind, add_path

#: ``model.store.vector_index.INDEX_TYPES``; that module imports faiss, so the names are
#: repeated here (a test keeps the two equal).
INDEX_TYPES = ("exact", "hnsw", "ivf")

EXIT_CODES = (
    "Exit codes: 0 success; 1 the catalogue does not verify; 2 bad input, nothing published; "
    "3 another build holds the index folder."
)


def _actor_range(text: str) -> tuple[int, int]:
    """``MIN[:MAX]`` -> (min, max) with 1 <= min <= max."""
    low, _, high = text.partition(":")
    try:
        bounds = (int(low), int(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--embed-actors must be MIN[:MAX], got {text!r}"
        ) from None
    if not 1 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"--embed-actors needs 1 <= MIN <= MAX, got {text!r}")
    return bounds


def _add_build_options(p: argparse.ArgumentParser, index: Kind) -> None:
    """Options of ``build`` and ``add``: the index (``index``: what it must name), the executor."""
    add_path(p, "--index", index, required=True, help="INDEX_DIR")
    p.add_argument("--index-type", choices=INDEX_TYPES, default="exact")
    p.add_argument("--keep", type=int, default=5, help="versions kept (older ones pruned)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument(
        "--device",
        default=None,
        help="auto, cpu or cuda (default: $NODULE_DEVICE, else auto)",
    )
    p.add_argument(
        "--on-error",
        choices=("fail", "skip"),
        default="fail",
        help="an unreadable scan fails the build (default) or is skipped and reported",
    )
    p.add_argument("--no-progress", action="store_true")
    _add_ray_options(p)


def _add_ray_options(p: argparse.ArgumentParser) -> None:
    """``--executor`` and the options of the Ray executor."""
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local worker processes (default), or a Ray cluster (pip install '.[ray]')",
    )
    p.add_argument(
        "--address",
        default=None,
        help="ray: 'auto' or HOST:PORT of a running cluster (default: start a local one)",
    )
    p.add_argument(
        "--embed-actors",
        type=_actor_range,
        default=(1, 1),
        help="ray: embed actor pool size MIN[:MAX] (default 1)",
    )
    p.add_argument("--gpus-per-actor", type=float, default=0.0, help="ray: GPUs per embed actor")
    p.add_argument(
        "--max-retries",
        type=int,
        default=2,
        help="ray: retries of a crashed crop task / restarts of an embed actor (default 2)",
    )
    p.add_argument(
        "--max-failed-scans",
        type=int,
        default=None,
        help="more failed scans than this fail the build, nothing published (ray default "
        "10; local: with --on-error skip, default unlimited)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="ray: keep the scans an interrupted run of the same build finished",
    )


def _add_build(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``nodule-index build``: from a LUNA16-layout folder or a PACS series list."""
    b = sub.add_parser(
        "build",
        help="embed every annotated nodule into a new catalogue version",
        description="Embed every annotated nodule of a LUNA16-layout folder (or of PACS series "
        "read over DICOMweb) with a model and publish them as a new catalogue version in "
        f"INDEX_DIR (made when missing). {EXIT_CODES}",
    )
    where = b.add_mutually_exclusive_group(required=True)
    add_path(b, "--data", Kind.LUNA, group=where, help="LUNA16-layout folder")
    add_path(
        b,
        "--series-list",
        Kind.FILE,
        group=where,
        what="a CSV of PACS series and nodules",
        help="CSV of PACS series and nodules (study_uid, series_uid, coordX, coordY, coordZ, "
        "diameter_mm[, patient_id]) read over DICOMweb from --dicomweb-url",
    )
    b.add_argument(
        "--dicomweb-url",
        default=None,
        help="the PACS's DICOMweb root (default $NODULE_DICOMWEB_URL; credentials from "
        "NODULE_DICOMWEB_USER/_PASSWORD or "
        "NODULE_DICOMWEB_TOKEN, never on the command line)",
    )
    add_path(b, "--model", Kind.MODEL, required=True, help="MODEL_DIR (card.json, weights.pt)")
    _add_labels(b)
    _add_build_options(b, Kind.OUTPUT_FOLDER)


def _add_labels(parser: argparse.ArgumentParser) -> None:
    """``--labels``: the labels file a version's nodules take their labels from."""
    add_path(
        parser,
        "--labels",
        Kind.FILE,
        what="a labels.csv made by nodule-index labels",
        default=None,
        help="labels.csv from `nodule-index labels`",
    )


def _add_add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``nodule-index add``: the new scans of a folder into a new version."""
    a = sub.add_parser(
        "add",
        help="index the scans of DIR not yet in the catalogue (new version)",
        description="Publish a new catalogue version: the current one plus the nodules of the "
        "scans of --data it does not hold yet, embedded with the catalogue's own model (or "
        f"--model, which must be the same). {EXIT_CODES}",
    )
    add_path(a, "--data", Kind.LUNA, required=True, help="LUNA16-layout folder")
    add_path(a, "--model", Kind.MODEL, default=None, help="default: the index's own model")
    _add_labels(a)
    _add_build_options(a, Kind.CATALOGUE)


def _add_admin(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``verify``, ``versions`` and ``rollback``."""
    v = sub.add_parser(
        "verify",
        help="check a catalogue version (default: CURRENT)",
        description="Check a catalogue version: ids, counts, dimensions, checksums, a "
        "self-search, the model fingerprint and the recorded match threshold. Exit 0 when "
        "sound, 1 with the problems listed, 2 on bad input.",
    )
    add_path(v, "--index", Kind.CATALOGUE, required=True, help="INDEX_DIR")
    v.add_argument("--version", default=None, help="the version to check (default: CURRENT)")
    add_path(v, "--model", Kind.MODEL, default=None, help="also check it was built with this")
    ls = sub.add_parser(
        "versions",
        help="list the catalogue versions",
        description="List the complete catalogue versions on stdout, oldest first, one line "
        "each: '*' on the current one, the version, nodules, index type, model fingerprint, "
        "parent version.",
    )
    add_path(ls, "--index", Kind.CATALOGUE, required=True, help="INDEX_DIR")
    r = sub.add_parser(
        "rollback",
        help="make an earlier version CURRENT again",
        description="Make an earlier complete version the current one again (CURRENT is "
        "replaced atomically).",
    )
    r.add_argument("version", help="the version to make current (see `versions`)")
    add_path(r, "--index", Kind.CATALOGUE, required=True, help="INDEX_DIR")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the catalogue commands on the CLI."""
    _add_build(sub)
    _add_add(sub)
    _add_admin(sub)
