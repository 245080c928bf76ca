"""Catalogue builds: lock -> plan -> embed -> publish.

Builds and adds share one path: the nodules to index (with their scans, labels and reads) are
collected by a source (``indexer.build.sources``); ``plan`` assigns ids and reuses the vectors
the current version holds under the same model (never re-embedded); an ``EmbedExecutor``
(``embed``: local processes, or ``ray_executor``: a Ray cluster) cuts and embeds the rest;
``publish`` writes the new version in its own folder, verifies it, and only then switches
``CURRENT``. A build killed at any moment leaves the previous version serving; its unfinished
folder is removed by the next build.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from indexer.build.embed import EmbedExecutor, LocalExecutor
from indexer.build.plan import (
    BuildError,
    BuildLockedError,
    NoduleEntry,
    OnError,
    ScanEntry,
    plan_build,
)
from indexer.build.publish import BuildResult, PublishOptions, publish
from indexer.build.ray_executor import RayExecutor, RayOptions
from model.ct.pacs import PacsConfig
from model.nn.embedder import Embedder
from model.store.catalog import verify_version
from model.store.layout import IndexLayout, LayoutError
from model.store.vector_index import IndexType

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"


@contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    """One build at a time per index folder (an advisory lock the kernel drops if we die)."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with (index_dir / LOCK_FILE).open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildLockedError(f"{index_dir}: another build is running") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_catalog(
    *,
    index_dir: Path,
    model_dir: Path,
    scans: dict[str, ScanEntry],
    nodes: list[NoduleEntry],
    data_fingerprint: str,
    index_type: IndexType = "exact",
    index_params: dict[str, Any] | None = None,
    keep: int = 5,
    workers: int = 1,
    on_error: OnError = "fail",
    device: str = "auto",
    progress: bool = True,
    pacs: PacsConfig | None = None,
    ray: RayOptions | None = None,
    max_failed_scans: int | None = None,
) -> BuildResult:
    """Write, verify and publish a new catalogue version of ``nodes``.

    Scans whose path is a ``dicomweb:`` address are read from ``pacs``. With ``ray`` the nodules
    are embedded on a Ray cluster, else by ``workers`` local processes. ``max_failed_scans``:
    with ``on_error="skip"``, more failures than this fail the build.

    Raises:
        BuildLockedError: another build runs on ``index_dir``.
        BuildError: a scan failed with ``on_error="fail"``, nothing to index, or the new version
            did not verify. Nothing is published then; the previous version stays current.
    """
    executor: EmbedExecutor
    if ray is not None:
        executor = RayExecutor(index_dir, model_dir, ray, device, pacs, progress)
    else:
        executor = LocalExecutor(workers, on_error, progress, pacs, max_failed_scans)
    options = PublishOptions(model_dir, data_fingerprint, index_type, index_params, keep, pacs)
    return run_build(index_dir, model_dir, device, scans, nodes, executor, options)


def run_build(
    index_dir: Path,
    model_dir: Path,
    device: str,
    scans: dict[str, ScanEntry],
    nodes: list[NoduleEntry],
    executor: EmbedExecutor,
    options: PublishOptions,
) -> BuildResult:
    """The stages under the index's lock (see ``build_catalog``)."""
    started = time.perf_counter()
    layout = IndexLayout(index_dir)
    with build_lock(index_dir):
        removed = layout.clean_unfinished()
        if removed:
            logger.info("removed unfinished versions %s", removed)
        embedder = Embedder.from_model_dir(model_dir, device)
        plan = plan_build(layout, embedder.card.fingerprint, scans, nodes)
        t_embed = time.perf_counter()
        outcome = executor.embed(plan, embedder)
        timings = {"embed_s": time.perf_counter() - t_embed}
        record, pruned = publish(layout, plan, embedder, outcome, options, timings, started)
    timings["total_s"] = time.perf_counter() - started
    return BuildResult(
        version=record.version,
        n_scans=record.n_scans,
        n_nodules=record.n_nodules,
        n_embedded=record.n_embedded,
        n_reused=record.n_reused,
        failed_scans=record.failed_scans,
        timings_s=timings,
        removed_unfinished=removed,
        pruned=pruned,
    )


def rollback(index_dir: Path, version: str) -> None:
    """Point ``CURRENT`` back at an earlier complete version after verifying it."""
    layout = IndexLayout(index_dir)
    if version not in layout.versions():
        raise LayoutError(f"no complete version {version!r} in {index_dir}")
    problems = verify_version(index_dir, version)
    if problems:
        raise BuildError(f"version {version} does not verify: " + "; ".join(problems))
    with build_lock(index_dir):
        layout.set_current(version)
