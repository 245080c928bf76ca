"""``nodule-index build | add | verify | versions | rollback`` (arguments: ``.arguments``).

Exit codes a cron job can rely on: 0 success; 1 the catalogue does not verify; 2 bad input
(missing data, a model that does not match the index, an unreadable scan with
``--on-error fail``), nothing published; 3 another build holds the index folder.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from indexer.build.builder import build_catalog, rollback
from indexer.build.plan import BuildError, BuildLockedError
from indexer.build.publish import BuildResult
from indexer.build.sources import collect_current, collect_data, collect_pacs
from indexer.data.luna import LunaLayoutError
from indexer.labels.errors import LabelSourceError
from indexer.settings import IndexerSettings
from indexer.train.samples import data_fingerprint
from model.clinical.labels import LabelRule
from model.nn.card import CardError, read_card
from model.store.catalog import verify_version
from model.store.layout import IndexLayout, LayoutError

if TYPE_CHECKING:
    from indexer.build.ray_executor import RayOptions

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_PROBLEMS, EXIT_BAD_INPUT, EXIT_LOCKED = 0, 1, 2, 3


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
            model_dir = args.model or manifest.model_dir_at(args.index)
            card = read_card(model_dir)
            if card.fingerprint != manifest.model_fingerprint:
                logger.error(
                    "model %s (%s) does not match the index, built with %s; run `build` to "
                    "rebuild everything with it",
                    model_dir,
                    card.fingerprint[:12],
                    manifest.model_fingerprint[:12],
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
                f"{manifest.data_fingerprint}+{data_fingerprint(args.data)}".encode()
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
        manifest.n_nodules,
        manifest.dim,
        manifest.index_type,
        manifest.model_fingerprint[:12],
    )
    return EXIT_OK


def run_versions(args: argparse.Namespace) -> int:
    """``versions``: one line per complete version on stdout (to pipe), the current one marked."""
    layout = IndexLayout(args.index)
    try:
        current = layout.current()
        lines = [_version_line(layout, version, current) for version in layout.versions()]
    except LayoutError as e:
        logger.error("%s", e)
        return EXIT_BAD_INPUT
    if not lines:
        logger.warning("%s holds no complete version yet", args.index)
    # The listing is the command's output, not a log line.
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    sys.stdout.flush()
    return EXIT_OK


def _version_line(layout: IndexLayout, version: str, current: str | None) -> str:
    m = layout.manifest(version)
    mark = "*" if version == current else " "
    return (
        f"{mark} {version}  {m.n_nodules:6d} nodules  {m.index_type:<5}  "
        f"model {m.model_fingerprint[:12]}  parent {m.parent_version or '-'}"
    )


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
