"""``nodule-index build | add | verify | versions | rollback``.

Exit codes a cron job can rely on: 0 success; 1 the catalogue does not verify; 2 bad input
(missing data, a model that does not match the index, an unreadable scan with
``--on-error fail``), nothing published; 3 another build holds the index folder.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from indexer.build.builder import build_catalog, rollback
from indexer.build.plan import BuildError, BuildLockedError
from indexer.build.publish import BuildResult
from indexer.build.sources import collect_current, collect_data, collect_pacs
from indexer.labels.errors import LabelSourceError
from indexer.luna import LunaLayoutError
from indexer.settings import IndexerSettings
from indexer.train.samples import data_fingerprint
from model.card import CardError, read_card
from model.labels import LabelRule
from model.sources import model_dir_of
from model.store.catalog import verify_version
from model.store.layout import IndexLayout, LayoutError
from model.store.vector_index import INDEX_TYPES

if TYPE_CHECKING:
    from indexer.build.ray_executor import RayOptions

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_PROBLEMS, EXIT_BAD_INPUT, EXIT_LOCKED = 0, 1, 2, 3


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


def _add_build_options(p: argparse.ArgumentParser) -> None:
    """Options of ``build`` and ``add``: the index, the workers and the executor."""
    p.add_argument("--index", type=Path, required=True, help="INDEX_DIR")
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
    b = sub.add_parser("build", help="embed every annotated nodule into a new catalogue version")
    where = b.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", type=Path, help="LUNA16-layout folder")
    where.add_argument(
        "--series-list",
        type=Path,
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
    b.add_argument("--model", type=Path, required=True, help="MODEL_DIR (card.json, weights.pt)")
    b.add_argument(
        "--labels", type=Path, default=None, help="labels.csv from `nodule-index labels`"
    )
    _add_build_options(b)


def _add_add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``nodule-index add``: the new scans of a folder into a new version."""
    a = sub.add_parser("add", help="index the scans of DIR not yet in the catalogue (new version)")
    a.add_argument("--data", type=Path, required=True)
    a.add_argument("--model", type=Path, default=None, help="default: the index's own model")
    a.add_argument("--labels", type=Path, default=None)
    _add_build_options(a)


def _add_admin(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``verify``, ``versions`` and ``rollback``."""
    v = sub.add_parser("verify", help="check a catalogue version (default: CURRENT)")
    v.add_argument("--index", type=Path, required=True)
    v.add_argument("--version", default=None)
    v.add_argument("--model", type=Path, default=None, help="also check it was built with this")
    ls = sub.add_parser("versions", help="list the catalogue versions")
    ls.add_argument("--index", type=Path, required=True)
    r = sub.add_parser("rollback", help="make an earlier version CURRENT again")
    r.add_argument("version")
    r.add_argument("--index", type=Path, required=True)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the catalogue commands on the CLI."""
    _add_build(sub)
    _add_add(sub)
    _add_admin(sub)


def _log_result(result: BuildResult, index: Path) -> None:
    logger.info(
        "published %s: %d nodules in %d scans (%d embedded, %d reused) in %.1f s%s",
        result.version,
        result.n_nodules,
        result.n_scans,
        result.n_embedded,
        result.n_reused,
        result.timings_s.get("total_s", 0.0),
        f"; {len(result.failed_scans)} scans failed and were skipped"
        if result.failed_scans
        else "",
    )
    if result.failed_scans:
        # UIDs stay out of logs; the manifest (a file of the catalogue) lists them with reasons.
        logger.warning(
            "the failed scans' UIDs and errors: failed_scans in %s",
            index / "versions" / result.version / "manifest.json",
        )


def _ray_options(args: argparse.Namespace) -> RayOptions | None:
    if args.executor != "ray":
        return None
    from indexer.build.ray_executor import RayOptions

    return RayOptions(
        address=args.address,
        embed_actors=args.embed_actors,
        gpus_per_actor=max(0.0, args.gpus_per_actor),
        max_retries=max(0, args.max_retries),
        max_failed_scans=10 if args.max_failed_scans is None else max(0, args.max_failed_scans),
        resume=args.resume,
    )


def run_build(args: argparse.Namespace, settings: IndexerSettings) -> int:
    """``build`` and ``add``; ``settings``: the PACS credentials of ``build --series-list``."""
    try:
        pacs = None
        if args.command == "build" and args.series_list is not None:
            pacs = settings.pacs_config(args.dicomweb_url)
            if pacs is None:
                logger.error(
                    "--series-list needs --dicomweb-url or NODULE_DICOMWEB_URL (the PACS to read "
                    "from)"
                )
                return EXIT_BAD_INPUT
            scans, nodes = collect_pacs(args.series_list, args.labels)
            model_dir = args.model
            fingerprint = hashlib.sha256(
                pacs.url.encode() + args.series_list.read_bytes()
            ).hexdigest()
        elif args.command == "build":
            scans, nodes = collect_data(args.data, args.labels, LabelRule())
            model_dir = args.model
            fingerprint = data_fingerprint(args.data)
        else:
            old_scans, old_nodes, manifest = collect_current(args.index)
            model_dir = args.model or model_dir_of(args.index, manifest)
            card = read_card(model_dir)
            if card.fingerprint != manifest["model_fingerprint"]:
                logger.error(
                    "model %s (%s) does not match the index, built with %s; run `build` to "
                    "rebuild everything with it",
                    model_dir,
                    card.fingerprint[:12],
                    str(manifest["model_fingerprint"])[:12],
                )
                return EXIT_BAD_INPUT
            new_scans, new_nodes = collect_data(args.data, args.labels, LabelRule())
            added = [n for n in new_nodes if n.series_uid not in old_scans]
            scans = {**new_scans, **old_scans}
            nodes = old_nodes + added
            logger.info(
                "adding %d nodules of %d new scans", len(added), len({n.series_uid for n in added})
            )
            fingerprint = hashlib.sha256(
                f"{manifest['data_fingerprint']}+{data_fingerprint(args.data)}".encode()
            ).hexdigest()
        result = build_catalog(
            index_dir=args.index,
            model_dir=model_dir,
            scans=scans,
            nodes=nodes,
            data_fingerprint=fingerprint,
            index_type=args.index_type,
            keep=args.keep,
            workers=max(1, args.workers),
            on_error=args.on_error,
            device=args.device,
            progress=not args.no_progress,
            pacs=pacs,
            ray=_ray_options(args),
            max_failed_scans=args.max_failed_scans,
        )
    except BuildLockedError as e:
        logger.error("%s", e)
        return EXIT_LOCKED
    except (BuildError, LunaLayoutError, LabelSourceError, CardError, LayoutError, ValueError) as e:
        logger.error("%s", e)
        return EXIT_BAD_INPUT
    _log_result(result, args.index)
    return EXIT_OK


def run_verify(args: argparse.Namespace) -> int:
    """``verify``: 0 when sound, 1 with the problems listed."""
    layout = IndexLayout(args.index)
    try:
        version = args.version or layout.current()
        expected = read_card(args.model).fingerprint if args.model else None
    except (LayoutError, CardError) as e:
        logger.error("%s", e)
        return EXIT_BAD_INPUT
    if version is None:
        logger.error("%s: no catalogue built yet", args.index)
        return EXIT_BAD_INPUT
    problems = verify_version(args.index, version, expected)
    for problem in problems:
        logger.error("%s", problem)
    if problems:
        return EXIT_PROBLEMS
    manifest = layout.manifest(version)
    logger.info(
        "%s verifies: %d nodules, dim %d, %s index, model %s",
        version,
        manifest["n_nodules"],
        manifest["dim"],
        manifest["index_type"],
        str(manifest["model_fingerprint"])[:12],
    )
    return EXIT_OK


def run_versions(args: argparse.Namespace) -> int:
    """``versions``: one line per complete version, the current one marked."""
    layout = IndexLayout(args.index)
    try:
        current = layout.current()
        for version in layout.versions():
            m = layout.manifest(version)
            logger.info(
                "%s %s  %6d nodules  %-5s  model %s  parent %s",
                "*" if version == current else " ",
                version,
                m.get("n_nodules", 0),
                m.get("index_type", "?"),
                str(m.get("model_fingerprint", ""))[:12],
                m.get("parent_version") or "-",
            )
    except LayoutError as e:
        logger.error("%s", e)
        return EXIT_BAD_INPUT
    return EXIT_OK


def run_rollback(args: argparse.Namespace) -> int:
    """``rollback VERSION``."""
    try:
        rollback(args.index, args.version)
    except BuildLockedError as e:
        logger.error("%s", e)
        return EXIT_LOCKED
    except (LayoutError, BuildError) as e:
        logger.error("%s", e)
        return EXIT_BAD_INPUT
    logger.info("CURRENT is now %s", args.version)
    return EXIT_OK


#: The catalogue commands that need no settings (``build`` and ``add`` are ``run_build``).
COMMANDS = {
    "verify": run_verify,
    "versions": run_versions,
    "rollback": run_rollback,
}
