"""The build's embedding stage on a Ray cluster (Ray Data): crop tasks feeding an embed actor pool.

The unit of work is the local executor's: ``indexer.data.patches.cut_scan`` (open one scan, read the
regions its nodules need, the one patch function) then ``Embedder.embed_patches`` on that scan's
patches. Here the first runs as Ray Data ``map_batches`` tasks (one scan per task, bounded
retries: Ray's default would retry a crashing reader forever), the second in an actor pool
(``ActorPoolStrategy``; the model loads once per actor; an actor whose process dies is restarted
and its batch retried, boundedly). Ray Data streams between the stages with back-pressure, so
no stage holds all scans.

Each embedded scan is written by its actor as one Parquet shard under
``INDEX_DIR/.work/<run>/shards/`` (temp file + rename), so a driver that dies can ``--resume``
without redoing finished scans. The driver collects the rows, reports progress, and hands the
vectors to the one publish step (``indexer.build.publish``: FAISS + SQLite written once,
verified, published atomically). Scans that fail — a Python error in the reader, or a process
that keeps crashing — are listed with the reason; more than ``max_failed_scans`` of them fail
the build and nothing is published.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from indexer import failpoints
from indexer.build.embed import EmbedOutcome, scan_jobs
from indexer.build.plan import BuildError, BuildPlan, NoduleEntry, ScanEntry
from indexer.data.patches import ScanJob, cut_scan
from model.ct.pacs import PacsConfig
from model.nn.embedder import Embedder
from model.preprocessing import PatchSpec

logger = logging.getLogger(__name__)

WORK_DIR = ".work"


@dataclass(frozen=True)
class RayOptions:
    """How the build uses Ray.

    Attributes:
        address: ``auto`` or ``HOST:PORT`` of a running cluster; None starts a local one.
        embed_actors: (min, max) size of the embed actor pool.
        gpus_per_actor: GPUs each embed actor reserves (0: CPU actors).
        max_retries: retries of a crop task, restarts of an embed actor and retries of its batch.
        max_failed_scans: more failed scans than this fail the build (nothing is published).
        resume: keep the shards of an earlier run of the same build and skip their scans.
    """

    address: str | None = None
    embed_actors: tuple[int, int] = (1, 1)
    gpus_per_actor: float = 0.0
    max_retries: int = 2
    max_failed_scans: int = 10
    resume: bool = False


def run_dir(index_dir: Path, fingerprint: str, spec: PatchSpec, jobs: list[ScanJob]) -> Path:
    """The work folder of one build: the same model, spec and scans give the same folder."""
    digest = hashlib.sha256()
    digest.update(fingerprint.encode())
    digest.update(spec.model_dump_json().encode())
    for job in jobs:
        sizes = list(job.profile_diameters_mm) if job.profile_diameters_mm is not None else None
        digest.update(json.dumps([job.key, str(job.path), list(job.centers_xyz), sizes]).encode())
    return index_dir / WORK_DIR / digest.hexdigest()[:16]


def _crop(batch: dict[str, npt.NDArray[Any]], spec_json: str) -> dict[str, npt.NDArray[Any]]:
    """Ray task: cut the patches of the scans in ``batch`` (one scan per batch)."""
    spec = PatchSpec.model_validate_json(spec_json)
    keys, blobs, profile_blobs, errors = [], [], [], []
    for key, path, centers, pacs, sizes in zip(
        batch["key"], batch["path"], batch["centers"], batch["pacs"], batch["sizes"], strict=True
    ):
        job = ScanJob(
            str(key),
            Path(str(path)),
            [(float(c[0]), float(c[1]), float(c[2])) for c in json.loads(str(centers))],
            spec,
            PacsConfig(**json.loads(str(pacs))) if pacs else None,
            profile_diameters_mm=json.loads(str(sizes)) if sizes else None,
        )
        result = cut_scan(job)
        keys.append(result.key)
        blobs.append(_npy(result.patches))
        profile_blobs.append(_npy(result.profiles))
        errors.append(result.error or "")
    return {
        "key": np.array(keys, dtype=object),
        "patches": np.array(blobs, dtype=object),
        "profiles": np.array(profile_blobs, dtype=object),
        "error": np.array(errors, dtype=object),
    }


def _npy(array: npt.NDArray[Any] | None) -> bytes:
    """An array as .npy bytes; empty bytes for none."""
    if array is None:
        return b""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


class _EmbedActor:
    """Ray actor: the model loaded once; each batch's scans embedded and written as shards."""

    def __init__(self, model_dir: str, device: str, shards: str) -> None:
        self.embedder = Embedder.from_model_dir(Path(model_dir), device)
        self.shards = Path(shards)

    def __call__(self, batch: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        failpoints.crash_if("embed")
        keys, counts, errors = [], [], []
        rows = zip(batch["key"], batch["patches"], batch["profiles"], batch["error"], strict=True)
        for key, blob, profile_blob, error in rows:
            keys.append(str(key))
            if error:
                counts.append(0)
                errors.append(str(error))
                continue
            failpoints.reached(f"embed:{key}")  # tests: a scan still in work when the driver dies
            patches = np.load(io.BytesIO(bytes(blob)))
            profiles = np.load(io.BytesIO(bytes(profile_blob))) if profile_blob else None
            vectors = self.embedder.vectors(patches, profiles)
            table = pa.table(
                {
                    "row": pa.array(np.arange(len(vectors), dtype=np.int32)),
                    "vector": pa.array(list(vectors), type=pa.list_(pa.float32())),
                }
            )
            final = self.shards / f"{key}.parquet"
            temporary = final.with_suffix(f".{os.getpid()}.tmp")
            pq.write_table(table, temporary)
            os.replace(temporary, final)
            counts.append(len(vectors))
            errors.append("")
        return {
            "key": np.array(keys, dtype=object),
            "n": np.array(counts, dtype=np.int64),
            "error": np.array(errors, dtype=object),
        }


def read_shard(path: Path) -> npt.NDArray[np.float32] | None:
    """The vectors of one finished scan, in nodule order; None when the shard is unreadable."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError):
        return None
    rows = table.column("row").to_numpy()
    vectors = np.array(table.column("vector").to_pylist(), dtype=np.float32)
    return vectors[np.argsort(rows)]


def embed_with_ray(
    *,
    index_dir: Path,
    model_dir: Path,
    embedder: Embedder,
    scans: dict[str, ScanEntry],
    todo: dict[str, list[NoduleEntry]],
    device: str,
    options: RayOptions,
    pacs: PacsConfig | None,
    progress: bool,
) -> tuple[int, list[dict[str, str]], Path]:
    """Embed the nodules of ``todo`` on Ray; returns (count, failed scans, the run's work folder).

    Raises:
        BuildError: Ray is not installed, or more scans failed than ``max_failed_scans``.
    """
    try:
        import ray  # noqa: F401  (only whether it is there)
    except ImportError:
        raise BuildError(
            "--executor ray needs Ray: pip install 'nodule-search[ray]'; nothing was published"
        ) from None
    spec = embedder.card.preprocessing
    plan = BuildPlan(parent=None, scans=scans, nodes=[], todo=todo)
    jobs = scan_jobs(plan, embedder, pacs)
    work = run_dir(index_dir, embedder.card.fingerprint, spec, jobs)
    shards = work / "shards"
    if work.exists() and not options.resume:
        shutil.rmtree(work)
    shards.mkdir(parents=True, exist_ok=True)
    done = {p.stem for p in shards.glob("*.parquet")}
    pending = [job for job in jobs if job.key not in done]
    if done:
        logger.info("resuming: %d of %d scans already embedded in %s", len(done), len(jobs), work)
    errors: dict[str, str] = {}
    if pending:
        errors = _run_pipeline(pending, spec, model_dir, device, shards, options, progress)
    embedded = 0
    failed: list[dict[str, str]] = []
    for job in jobs:
        vectors = read_shard(shards / f"{job.key}.parquet")
        nodes = todo[job.key]
        if vectors is None or len(vectors) != len(nodes):
            reason = errors.get(job.key) or (
                f"its task or actor process crashed {options.max_retries + 1} times"
            )
            # Not the UID (nor a reader's message naming its file): the manifest lists them.
            logger.warning("a scan failed (%d so far; see the manifest)", len(failed) + 1)
            failed.append({"series_uid": job.key, "error": reason})
            continue
        for node, vector in zip(nodes, vectors, strict=True):
            node.vector = vector
        embedded += len(vectors)
    if len(failed) > options.max_failed_scans:
        # Their UIDs and reasons go to a file beside the shards, not into the log.
        listing = work / "failed_scans.json"
        listing.write_text(json.dumps(failed, indent=1), encoding="utf-8")
        raise BuildError(
            f"{len(failed)} scans failed, more than --max-failed-scans {options.max_failed_scans}"
            f" (which and why: {listing}); nothing was published; finished scans are kept for "
            "--resume"
        )
    return embedded, failed, work


@dataclass(frozen=True)
class RayExecutor:
    """The embed stage on a Ray cluster (``EmbedExecutor``)."""

    index_dir: Path
    model_dir: Path
    options: RayOptions
    device: str = "auto"
    pacs: PacsConfig | None = None
    progress: bool = True

    def embed(self, plan: BuildPlan, embedder: Embedder) -> EmbedOutcome:
        """Embed ``plan.todo`` on Ray; finished shards stay under ``work`` until published."""
        embedded, failed, work = embed_with_ray(
            index_dir=self.index_dir,
            model_dir=self.model_dir,
            embedder=embedder,
            scans=plan.scans,
            todo=plan.todo,
            device=self.device,
            options=self.options,
            pacs=self.pacs,
            progress=self.progress,
        )
        return EmbedOutcome(embedded=embedded, failed=failed, work=work)


@contextmanager
def _connected(options: RayOptions) -> Iterator[None]:
    """Connected to the cluster (started locally without an address); disconnects if it joined."""
    import ray

    started = not ray.is_initialized()
    if started:
        # Workers run with the cluster's environment, not the driver's: hand over the NODULE_*
        # settings (paths, failpoints of the tests) as the job's runtime environment.
        env = {k: v for k, v in os.environ.items() if k.startswith("NODULE_")}
        ray.init(
            address=options.address,
            logging_level="WARNING",
            log_to_driver=False,
            runtime_env={"env_vars": env} if env else None,
        )
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _run_pipeline(
    pending: list[ScanJob],
    spec: PatchSpec,
    model_dir: Path,
    device: str,
    shards: Path,
    options: RayOptions,
    progress: bool,
) -> dict[str, str]:
    """Run crop -> embed over ``pending``; returns the Python-level errors by scan."""
    with _connected(options):
        return _stream(pending, spec, model_dir, shards, device, options, progress)


def _stream(
    pending: list[ScanJob],
    spec: PatchSpec,
    model_dir: Path,
    shards: Path,
    device: str,
    options: RayOptions,
    progress: bool,
) -> dict[str, str]:
    import ray.data
    from tqdm import tqdm

    context = ray.data.DataContext.get_current()
    # One block per scan: a scan whose process keeps crashing loses only its own block.
    context.max_errored_blocks = options.max_failed_scans
    context.enable_progress_bars = False
    items = [
        {
            "key": job.key,
            "path": str(job.path),
            "centers": json.dumps([list(c) for c in job.centers_xyz]),
            "pacs": json.dumps(dataclasses.asdict(job.pacs)) if job.pacs is not None else "",
            "sizes": (
                json.dumps(list(job.profile_diameters_mm))
                if job.profile_diameters_mm is not None
                else ""
            ),
        }
        for job in pending
    ]
    low, high = options.embed_actors
    with warnings.catch_warnings():
        # Ray 2.60 deprecates remote args such as max_retries/max_restarts given to map_batches
        # and offers no named replacement for them yet; the extra pins 2.60.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        dataset = (
            ray.data.from_items(items, override_num_blocks=len(items))
            .map_batches(
                _crop,
                batch_size=1,
                fn_kwargs={"spec_json": spec.model_dump_json()},
                num_cpus=1,
                # Bounded: Ray Data retries a task whose process crashes forever by default.
                max_retries=options.max_retries,
            )
            .map_batches(
                _EmbedActor,
                batch_size=1,
                fn_constructor_kwargs={
                    "model_dir": str(model_dir.resolve()),
                    "device": device,
                    "shards": str(shards.resolve()),
                },
                compute=ray.data.ActorPoolStrategy(min_size=low, max_size=high),
                num_gpus=options.gpus_per_actor,
                # Bounded too: Ray Data restarts a dying pool actor forever by default.
                max_restarts=options.max_retries,
                max_task_retries=options.max_retries,
            )
        )
    errors: dict[str, str] = {}
    bar = tqdm(total=len(pending), desc="embedding (ray)", unit="scan", disable=not progress)
    try:
        for row in dataset.iter_rows():
            failpoints.crash_if("driver-result")
            if row["error"]:
                errors[str(row["key"])] = str(row["error"])
            bar.update(1)
    except Exception as e:  # Ray raises its own types once too many blocks failed
        raise BuildError(
            f"the Ray pipeline stopped: more than {options.max_failed_scans} scans failed "
            f"({type(e).__name__}); nothing was published; finished scans are kept for --resume"
        ) from None
    finally:
        bar.close()
    return errors
