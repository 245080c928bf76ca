"""The build's second stage: cut and embed the nodules the plan left without a vector.

An ``EmbedExecutor`` does it and fills ``NoduleEntry.vector`` in place. ``LocalExecutor`` runs
the readers in a pool of local processes (``indexer.data.patches.iter_scan_patches``);
``indexer.build.ray_executor.RayExecutor`` runs the same unit of work on a Ray cluster.
"""

from __future__ import annotations

import logging
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tqdm import tqdm

from indexer import failpoints
from indexer.build.plan import BuildError, BuildPlan, OnError
from indexer.data.patches import ScanJob, iter_scan_patches
from model.ct.pacs import PacsConfig
from model.nn.embedder import Embedder

logger = logging.getLogger(__name__)


@dataclass
class EmbedOutcome:
    """What the embed stage did.

    Attributes:
        embedded: vectors computed.
        failed: scans that could not be read (``series_uid``, ``error``), for the manifest.
        work: a folder of intermediate results to remove once the version is published.
    """

    embedded: int
    failed: list[dict[str, str]] = field(default_factory=list)
    work: Path | None = None


class EmbedExecutor(Protocol):
    """Computes the vectors of ``plan.todo`` with ``embedder``."""

    def embed(self, plan: BuildPlan, embedder: Embedder) -> EmbedOutcome:
        """Fill ``vector`` of every nodule in ``plan.todo`` that can be read.

        Raises:
            BuildError: a failure the build's policy does not accept; nothing is published.
        """
        ...


def scan_jobs(plan: BuildPlan, embedder: Embedder, pacs: PacsConfig | None) -> list[ScanJob]:
    """One job per scan with nodules to embed, in series UID order."""
    spec = embedder.card.preprocessing
    # A catalogue nodule's recorded diameter is its size measurement (the measured blocks);
    # never its labels or ratings (the vector comes from the image and the size only).
    sized = embedder.uses_profile
    return [
        ScanJob(
            uid,
            plan.scans[uid].path,
            [n.center_xyz for n in nodes],
            spec,
            pacs,
            profile_diameters_mm=[n.diameter_mm for n in nodes] if sized else None,
        )
        for uid, nodes in sorted(plan.todo.items())
    ]


def check_failures(failed: list[dict[str, str]], max_failed_scans: int | None) -> None:
    """More failed scans than allowed fail the build.

    Raises:
        BuildError: ``len(failed) > max_failed_scans``.
    """
    if max_failed_scans is not None and len(failed) > max_failed_scans:
        raise BuildError(
            f"{len(failed)} scans failed, more than --max-failed-scans "
            f"{max_failed_scans}; nothing was published"
        )


@dataclass(frozen=True)
class LocalExecutor:
    """Readers in ``workers`` local processes, the network in this one."""

    workers: int = 1
    on_error: OnError = "fail"
    progress: bool = True
    pacs: PacsConfig | None = None
    max_failed_scans: int | None = None

    def embed(self, plan: BuildPlan, embedder: Embedder) -> EmbedOutcome:
        """Cut each scan's patches in the pool and embed them as they arrive."""
        outcome = EmbedOutcome(embedded=0)
        bar = tqdm(
            total=plan.n_to_embed,
            desc="embedding",
            unit="nodule",
            leave=False,
            disable=None if self.progress else True,
        )
        try:
            for result in iter_scan_patches(scan_jobs(plan, embedder, self.pacs), self.workers):
                if result.patches is None:
                    self._failed(outcome, result.key, result.error)
                    continue
                vectors = embedder.vectors(result.patches, result.profiles)
                for node, vector in zip(plan.todo[result.key], vectors, strict=True):
                    node.vector = vector
                outcome.embedded += len(vectors)
                bar.update(len(vectors))
                failpoints.reached("embedding")
        except BrokenProcessPool:
            # A reader that kills its process (segfault, OOM killer) breaks the pool: fail at
            # once and say so, rather than hang as multiprocessing.Pool would.
            raise BuildError(
                "a worker process died while reading a scan (crash or out of memory); nothing "
                "was published; --executor ray retries and skips such scans"
            ) from None
        bar.close()
        check_failures(outcome.failed, self.max_failed_scans)
        return outcome

    def _failed(self, outcome: EmbedOutcome, uid: str, error: str | None) -> None:
        if self.on_error == "fail":
            raise BuildError(f"scan {uid} cannot be read ({error}); nothing was published")
        outcome.failed.append({"series_uid": uid, "error": error or ""})
        # Neither the UID nor the reader's message (it names the file, i.e. the UID): both go
        # to the version's manifest, not the log.
        logger.warning(
            "skipping a scan that cannot be read (%d so far; failed_scans in the manifest)",
            len(outcome.failed),
        )
