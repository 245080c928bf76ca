"""The training loop of the FP-reduction network.

Samples come from the patch cache; each epoch draws batches with a fixed share of positives from
the samples the curriculum admits and the online filter has not dropped; positives are augmented
(flips, 90-degree turns, shifts of up to ``margin`` voxels); the loss keeps the hardest negatives
of each batch. After every epoch: validation AUC and loss on the held-out subset, FROC/CPM on its
scans, a resumable checkpoint, and the best model so far (by validation AUC) saved with its card.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from indexer.data.luna import LunaPoint, read_annotations
from indexer.train.curriculum import (
    Curriculum,
    OnlineFilter,
    augment_with_mask,
    center_intensity,
    difficulty_ranks,
)
from indexer.train.froc import froc, roc_auc
from indexer.train.samples import (
    PatchCache,
    Sample,
    load_patients,
    select_samples,
    split_by_subset,
)
from model.nn.card import DataRecord, FrocResult, ModelCard, TrainingRecord, read_card, write_card
from model.nn.checkpoint import resolve_device, save_model
from model.nn.loss import hard_mining_loss, segmentation_loss
from model.nn.network import NetworkConfig, NoduleNet
from model.preprocessing import DEFAULT_SPEC, PatchSpec

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"


class TrainConfig(BaseModel):
    """Options of a training run (recorded in the model card)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: int = Field(default=10, ge=1, le=1000)
    batch_size: int = Field(default=32, ge=2, le=4096)
    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    positive_fraction: float = Field(default=0.25, gt=0, lt=1)
    negative_fraction: float = Field(default=0.5, gt=0, le=1)
    samples_per_epoch: int = Field(default=1536, ge=2)
    curriculum_start: float = Field(default=0.4, gt=0, le=1)
    curriculum_ramp_epochs: int = Field(default=4, ge=0)
    filter_threshold: float = Field(default=0.02, ge=0, lt=0.5)
    filter_floor: float = Field(default=0.3, ge=0, le=1)
    width: int = Field(default=12, ge=4, le=128)
    levels: int = Field(default=3, ge=1, le=5)
    # How the encoder's maps become the search vector; no effect on training itself, but part of
    # the model (its card and fingerprint), so a change makes a new model.
    embedding_pool: Literal["center-multiscale", "avg"] = "center-multiscale"
    embedding_center_fraction: float = Field(default=0.25, gt=0.0, le=1.0)
    patch: PatchSpec = DEFAULT_SPEC
    margin: int = Field(default=2, ge=0, le=8)
    intensity_jitter: float = Field(default=0.0, ge=0.0, le=0.2)
    scale_jitter: float = Field(default=0.0, ge=0.0, le=0.3)
    select: Literal["val-auc", "last"] = "val-auc"
    """Which epoch's weights are kept: the best validation AUC, or the last epoch's (for
    held-out sets without negatives, such as cross-validation folds of a crop collection)."""
    init_fingerprint: str | None = None
    """Fingerprint of the model whose weights the run started from (fine-tuning); None: random."""
    segmentation_weight: float = Field(default=0.0, ge=0.0, le=10.0)
    """Weight of the auxiliary mask loss (``model.nn.loss.segmentation_loss``) beside the
    FP-reduction loss; above 0 the network gets its mask branch, trained on the nodules whose
    scan has a mask (synthetic renders, VOI masks). 0: no mask branch."""
    max_negatives_per_scan: int = Field(default=300, ge=1)
    seed: int = 0
    amp: bool = True


@dataclass(frozen=True)
class TrainData:
    """Everything the loop needs about the data, prepared once."""

    samples: Sequence[Sample]
    cache: PatchCache
    train: list[int]
    val: list[int]
    annotations: list[LunaPoint]
    excluded: list[LunaPoint]
    fingerprint: str
    train_subsets: tuple[str, ...]
    val_subsets: tuple[str, ...]
    record: DataRecord | None = None

    @property
    def labels(self) -> np.ndarray:
        """Labels of all samples, (N,)."""
        return np.array([s.label for s in self.samples])


def load_luna_points(data_dir: Path) -> tuple[list[LunaPoint], list[LunaPoint]]:
    """Annotations and (when present) LUNA16's excluded findings of a data folder."""
    excluded_path = data_dir / "annotations_excluded.csv"
    excluded = read_annotations(excluded_path) if excluded_path.is_file() else []
    return read_annotations(data_dir / "annotations.csv"), excluded


def prepare_data(
    data_dir: Path,
    config: TrainConfig,
    *,
    val_subsets: Sequence[str] | None,
    cache_dir: Path,
    fingerprint: str,
    workers: int = 1,
    progress: bool = True,
) -> TrainData:
    """Samples, split and patch cache of a LUNA16-layout folder.

    Validation is a whole LUNA16 subset (the last one unless named) and keeps every candidate of
    its scans, so FROC counts all false positives; training samples up to
    ``config.max_negatives_per_scan`` negatives per scan.
    """
    annotations, excluded = load_luna_points(data_dir)
    samples_all = select_samples(data_dir, 10**9, config.seed)
    subsets = sorted({s.subset for s in samples_all})
    val = tuple(val_subsets or subsets[-1:])
    val_series = {s.series_uid for s in samples_all if s.subset in val}
    sampled = select_samples(data_dir, config.max_negatives_per_scan, config.seed)
    samples = [s for s in sampled if s.series_uid not in val_series] + [
        s for s in samples_all if s.series_uid in val_series
    ]
    train_idx, val_idx = split_by_subset(samples, val, load_patients(data_dir))
    started = time.perf_counter()
    cache = PatchCache.build_or_open(
        cache_dir, data_dir, samples, config.patch, config.margin, fingerprint, workers, progress
    )
    logger.info(
        "%d training samples (%d nodules), %d validation samples in %s; patches in %.0f s",
        len(train_idx),
        sum(samples[i].label for i in train_idx),
        len(val_idx),
        ",".join(val),
        time.perf_counter() - started,
    )
    return TrainData(
        record=data_record(data_dir, samples, train_idx, val_idx),
        samples=samples,
        cache=cache,
        train=train_idx,
        val=val_idx,
        annotations=annotations,
        excluded=excluded,
        fingerprint=fingerprint,
        train_subsets=tuple(s for s in subsets if s not in val),
        val_subsets=val,
    )


#: Summary files a data folder may carry, most specific first; the first found is the source.
SOURCE_FILES = ("realset.json", "synth.json", "crops.json")
#: Keys of a source file kept in the data card (counts and checksums, not the whole file).
SOURCE_KEYS = (
    "format",
    "options",
    "counts",
    "scans",
    "source",
    "lidc_source",
    "vois_table_sha256",
    "n_positives",
    "n_negatives",
    "n_inserted",
    "seed",
    "generator_version",
)


def data_record(
    data_dir: Path, samples: Sequence[Sample], train: Sequence[int], val: Sequence[int]
) -> DataRecord:
    """The data card of a training run: its source file, patients and class counts."""
    patients = load_patients(data_dir)
    source, sha, summary = "luna16", None, {}
    for name in SOURCE_FILES:
        path = data_dir / name
        if path.is_file():
            raw = path.read_bytes()
            source, sha = name, hashlib.sha256(raw).hexdigest()
            loaded = json.loads(raw)
            summary = {
                k: loaded[k] for k in SOURCE_KEYS if isinstance(loaded, dict) and k in loaded
            }
            break

    def patients_of(rows: Sequence[int]) -> set[str]:
        uids = {samples[i].series_uid for i in rows}
        return {patients.get(u, f"scan:{u}") for u in uids}

    def count(rows: Sequence[int], label: int) -> int:
        return sum(1 for i in rows if samples[i].label == label)

    train_patients = sorted(patients_of(train))
    return DataRecord(
        source=source,
        source_sha256=sha,
        train_patients=len(train_patients),
        val_patients=len(patients_of(val)),
        train_positives=count(train, 1),
        train_negatives=count(train, 0),
        val_positives=count(val, 1),
        val_negatives=count(val, 0),
        patients_sha256=hashlib.sha256("\n".join(train_patients).encode()).hexdigest(),
        summary=summary,
    )


def epoch_pool(
    epoch: int,
    train_mask: np.ndarray,
    ranks: np.ndarray,
    curriculum: Curriculum,
    online: OnlineFilter,
    labels: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Positives and negatives an epoch draws from.

    They are the training samples that the curriculum admits and the online filter has not dropped.
    """
    active = train_mask & curriculum.admitted(epoch, ranks) & ~online.dropped
    return np.flatnonzero(active & (labels == 1)), np.flatnonzero(active & (labels == 0))


def predict(
    network: NoduleNet,
    data: TrainData,
    indices: Sequence[int],
    device: torch.device,
    batch: int,
    amp: bool,
) -> np.ndarray:
    """Nodule probabilities of samples (centre crops, no augmentation)."""
    network.eval()
    out = np.empty(len(indices), dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, len(indices), batch):
            chunk = indices[start : start + batch]
            x = torch.from_numpy(np.stack([data.cache.crop(i) for i in chunk]))[:, None]
            x = x.to(device, memory_format=torch.channels_last_3d)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = network(x)
            out[start : start + len(chunk)] = torch.sigmoid(logits.float()).cpu().numpy()
    return out


def validate(
    network: NoduleNet, data: TrainData, device: torch.device, batch: int, amp: bool
) -> tuple[dict[str, float], FrocResult]:
    """Validation AUC and loss on the held-out subset, and FROC over its scans."""
    probs = predict(network, data, data.val, device, batch, amp)
    labels = data.labels[data.val]
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    loss = float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))
    candidates = [
        LunaPoint(data.samples[i].series_uid, data.samples[i].center_xyz) for i in data.val
    ]
    scans = sorted({data.samples[i].series_uid for i in data.val})
    result = froc(candidates, probs, data.annotations, scans, data.excluded)
    metrics = {"val_auc": roc_auc(labels, probs), "val_loss": loss}
    if network.config.segmentation:
        metrics["val_dice"] = validation_dice(network, data, device, batch, amp)
    return metrics, result


def validation_dice(
    network: NoduleNet, data: TrainData, device: torch.device, batch: int, amp: bool
) -> float:
    """Median Dice of the mask branch (sigmoid > 0.5) on the validation nodules with a mask.

    NaN when none has a mask.
    """
    rows = [i for i in data.val if data.samples[i].label == 1 and data.cache.has_mask(i)]
    scores: list[float] = []
    network.eval()
    with torch.inference_mode():
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            x = torch.from_numpy(np.stack([data.cache.crop(i) for i in chunk]))[:, None]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = network.segment(x.to(device, memory_format=torch.channels_last_3d))
            found = (logits.float() > 0).cpu().numpy()[:, 0]
            for i, mask in zip(chunk, found, strict=True):
                truth = data.cache.crop_mask(i) > 0.5
                total = int(mask.sum() + truth.sum())
                scores.append(2.0 * float((mask & truth).sum()) / total if total else 1.0)
    return float(np.median(scores)) if scores else float("nan")


def _batches(
    positives: np.ndarray, negatives: np.ndarray, config: TrainConfig, rng: np.random.Generator
) -> list[np.ndarray]:
    """Index batches of one epoch: a fixed share of positives (with replacement), negatives once."""
    n_pos = max(1, round(config.positive_fraction * config.batch_size))
    n_neg = config.batch_size - n_pos
    if len(positives) == 0 or len(negatives) == 0:
        raise ValueError("an epoch needs both nodules and non-nodules in the training set")
    n_batches = max(
        1, min(config.samples_per_epoch // config.batch_size, math.ceil(len(negatives) / n_neg))
    )
    order = rng.permutation(negatives)
    batches = []
    for b in range(n_batches):
        negs = np.take(order, np.arange(b * n_neg, (b + 1) * n_neg), mode="wrap")
        batches.append(np.concatenate([rng.choice(positives, n_pos, replace=True), negs]))
    return batches


@dataclass(frozen=True)
class _Batch:
    """One training batch: patches, labels and the nodules' masks where known."""

    x: torch.Tensor
    """(N, 1, D, H, W) patches."""
    y: torch.Tensor
    """(N,) 1 nodule, 0 not."""
    masks: torch.Tensor
    """(N, 1, D, H, W) mask targets (zeros where ``has_mask`` is False)."""
    has_mask: torch.Tensor
    """(N,) bool."""


def _make_batch(
    data: TrainData, indices: np.ndarray, config: TrainConfig, rng: np.random.Generator
) -> _Batch:
    shape = config.patch.patch_shape_zyx
    patches, masks, has = [], [], []
    for i in indices.tolist():
        mask = None
        if data.samples[i].label == 1:
            shift = tuple(int(v) for v in rng.integers(-config.margin, config.margin + 1, size=3))
            patch = data.cache.crop(i, shift)  # type: ignore[arg-type]
            wanted = config.segmentation_weight > 0 and data.cache.has_mask(i)
            source = data.cache.crop_mask(i, shift) if wanted else None  # type: ignore[arg-type]
            patch, mask = augment_with_mask(
                patch,
                source,
                rng,
                intensity_jitter=config.intensity_jitter,
                scale_jitter=config.scale_jitter,
            )
        else:
            patch = data.cache.crop(i)
        patches.append(patch)
        masks.append(mask if mask is not None else np.zeros(shape, dtype=np.float32))
        has.append(mask is not None)
    return _Batch(
        x=torch.from_numpy(np.stack(patches))[:, None],
        y=torch.from_numpy(data.labels[indices].astype(np.float32)),
        masks=torch.from_numpy(np.stack(masks))[:, None],
        has_mask=torch.tensor(has, dtype=torch.bool),
    )


@dataclass
class _Run:
    """The mutable state of a training run: what a checkpoint saves and a resume restores."""

    network: NoduleNet
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    online: OnlineFilter
    rng: np.random.Generator
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, Any] = field(
        default_factory=lambda: {"auc": -1.0, "loss": float("inf"), "epoch": -1}
    )
    start_epoch: int = 0


@dataclass(frozen=True)
class _Epoch:
    """What one epoch of training measured."""

    index: int
    metrics: dict[str, float]
    froc: FrocResult
    row: dict[str, float]


def _network(config: TrainConfig, init: NoduleNet | None, device: torch.device) -> NoduleNet:
    """The run's network: fresh, or the weights of ``init`` (same architecture), on ``device``."""
    network = NoduleNet(
        NetworkConfig(
            width=config.width,
            levels=config.levels,
            embedding_pool=config.embedding_pool,
            embedding_center_fraction=config.embedding_center_fraction,
            segmentation=config.segmentation_weight > 0,
        )
    )
    if init is not None:
        _load_init(network, init)
    # channels-last 3-D memory format: about 25% faster convolutions on CPU (oneDNN) and GPU.
    network.to(device, memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    return network


def _load_init(network: NoduleNet, init: NoduleNet) -> None:
    """Start from ``init``'s weights: the same architecture, with or without the mask branch.

    A model trained without the mask branch may start one (the branch starts fresh), and one
    with it may be fine-tuned without (the branch is dropped); the rest must match exactly.
    """
    same_branch = network.config.model_copy(update={"segmentation": init.config.segmentation})
    if init.config != same_branch:
        raise ValueError(
            f"the initial model's architecture {init.config} differs from the run's "
            f"{network.config}"
        )
    missing, unexpected = network.load_state_dict(init.state_dict(), strict=False)
    if any(not k.startswith("seg_") for k in [*missing, *unexpected]):
        raise ValueError(f"the initial model's weights do not fit: {missing or unexpected}")


def _new_run(config: TrainConfig, network: NoduleNet, n_samples: int) -> _Run:
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    return _Run(
        network=network,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs),
        online=OnlineFilter(n_samples, config.filter_threshold, config.filter_floor),
        rng=np.random.default_rng(config.seed),
    )


def _save_checkpoint(path: Path, run: _Run, config: TrainConfig, epoch: int) -> None:
    """Write the resumable state after ``epoch`` atomically (a killed run keeps the last one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "epoch": epoch,
            "config": config.model_dump_json(),
            "model": run.network.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "dropped": torch.from_numpy(run.online.dropped.astype(np.uint8)),
            "rng": run.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "history": run.history,
            "best": run.best,
        },
        tmp,
    )
    tmp.replace(path)


def _restore_checkpoint(path: Path, run: _Run, config: TrainConfig) -> None:
    """Continue ``run`` from the checkpoint at ``path`` (same options only)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["config"] != config.model_dump_json():
        raise ValueError("the checkpoint to resume was trained with other options")
    run.network.load_state_dict(state["model"], strict=True)
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.online.dropped = state["dropped"].numpy().astype(bool)
    run.rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    run.history, run.best, run.start_epoch = state["history"], state["best"], state["epoch"] + 1
    logger.info("resuming after epoch %d", state["epoch"])


def _fit_batches(
    run: _Run,
    batches: list[np.ndarray],
    data: TrainData,
    config: TrainConfig,
    device: torch.device,
    bar_label: str,
    progress: bool,
) -> tuple[list[float], dict[int, float]]:
    """One pass of optimiser steps; returns the batch losses and each seen sample's probability."""
    amp = config.amp and device.type == "cuda"
    run.network.train()
    seen: dict[int, float] = {}
    losses: list[float] = []
    bar = tqdm(
        batches, desc=bar_label, unit="batch", disable=None if progress else True, leave=False
    )
    for indices in bar:
        batch = _make_batch(data, indices, config, run.rng)
        x, y = batch.x.to(device, memory_format=torch.channels_last_3d), batch.y.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            if config.segmentation_weight > 0:
                logits, mask_logits = run.network.forward_with_mask(x)
            else:
                logits, mask_logits = run.network(x), None
        loss, _ = hard_mining_loss(logits.float(), y, negative_fraction=config.negative_fraction)
        if mask_logits is not None:
            masks = batch.masks.to(device)
            loss = loss + config.segmentation_weight * segmentation_loss(
                mask_logits.float(), masks, batch.has_mask.to(device)
            )
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        run.optimizer.step()
        losses.append(float(loss.detach()))
        probs = torch.sigmoid(logits.detach().float()).cpu().numpy()
        seen.update(zip(indices.tolist(), probs.tolist(), strict=True))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    return losses, seen


def _run_epoch(
    run: _Run,
    epoch: int,
    pool: tuple[np.ndarray, np.ndarray],
    data: TrainData,
    config: TrainConfig,
    device: torch.device,
    progress: bool,
) -> _Epoch:
    """Train one epoch on the ``(positives, negatives)`` pool, update the filter, validate."""
    started = time.perf_counter()
    positives, negatives = pool
    batches = _batches(positives, negatives, config, run.rng)
    label = f"epoch {epoch + 1}/{config.epochs}"
    losses, seen = _fit_batches(run, batches, data, config, device, label, progress)
    run.scheduler.step()
    dropped = run.online.update(list(seen), list(seen.values()), data.labels)
    amp = config.amp and device.type == "cuda"
    metrics, froc_result = validate(run.network, data, device, max(64, config.batch_size), amp)
    row = {
        "epoch": float(epoch),
        "train_loss": float(np.mean(losses)),
        **metrics,
        "cpm": froc_result.cpm,
        "active_positives": float(len(positives)),
        "active_negatives": float(len(negatives)),
        "filtered_total": float(run.online.dropped.sum()),
        "newly_filtered": float(dropped),
        "epoch_s": time.perf_counter() - started,
    }
    return _Epoch(index=epoch, metrics=metrics, froc=froc_result, row=row)


def _log_epoch(result: _Epoch, config: TrainConfig) -> None:
    row = result.row
    logger.info(
        "epoch %d/%d: train loss %.4f, val loss %.4f, val AUC %.4f, CPM %.3f "
        "(%d+%d samples active, %d filtered) %.0f s",
        result.index + 1,
        config.epochs,
        row["train_loss"],
        row["val_loss"],
        row["val_auc"],
        row["cpm"],
        row["active_positives"],
        row["active_negatives"],
        row["filtered_total"],
        row["epoch_s"],
    )
    if "val_dice" in row:
        logger.info(
            "epoch %d: median validation Dice of the mask branch %.3f",
            result.index + 1,
            row["val_dice"],
        )


def _selects(result: _Epoch, run: _Run, config: TrainConfig) -> bool:
    """Whether this epoch's weights become the kept model (and record it as the best)."""
    auc = result.metrics["val_auc"] if np.isfinite(result.metrics["val_auc"]) else 0.0
    loss = result.metrics["val_loss"]
    improved = auc > run.best["auc"] or (auc == run.best["auc"] and loss < run.best["loss"])
    chosen = improved if config.select == "val-auc" else result.index == config.epochs - 1
    if chosen:
        run.best = {"auc": auc, "loss": loss, "epoch": result.index}
    return chosen


def _training_record(
    result: _Epoch, data: TrainData, config: TrainConfig, device: torch.device, elapsed_s: float
) -> TrainingRecord:
    metrics = {**result.metrics, "train_loss": result.row["train_loss"]}
    return TrainingRecord(
        data_fingerprint=data.fingerprint,
        seed=config.seed,
        epochs=config.epochs,
        best_epoch=result.index,
        device=str(device),
        train_time_s=elapsed_s,
        train_subsets=data.train_subsets,
        val_subsets=data.val_subsets,
        n_train_samples=len(data.train),
        n_val_samples=len(data.val),
        metrics={k: v for k, v in metrics.items() if math.isfinite(v)},
        froc=result.froc,
        options=config.model_dump(mode="json"),
        data=data.record,
    )


def _final_card(
    out_dir: Path, card: ModelCard | None, history: list[dict[str, float]], elapsed_s: float
) -> ModelCard:
    """The kept model's card, completed with the whole run's time and every epoch's metrics."""
    card = card or read_card(out_dir)  # None when resumed after the last epoch had run
    if card.training is not None:
        training = card.training.model_copy(
            update={"train_time_s": elapsed_s, "history": tuple(history)}
        )
        card = card.model_copy(update={"training": training})
        write_card(out_dir, card)
    return card


class Trainer:
    """One training run in small steps: restore -> (pool -> epoch -> log -> keep -> checkpoint)*.

    Holds the run's state (``_Run``: network, optimiser, schedule, online filter, generator) and
    what the curriculum needs (difficulty ranks, the training mask), prepared once.
    """

    def __init__(
        self,
        config: TrainConfig,
        data: TrainData,
        out_dir: Path,
        *,
        device: torch.device,
        code_version: str,
        init: NoduleNet | None = None,
    ) -> None:
        self.config, self.data, self.out_dir = config, data, out_dir
        self.device, self.code_version = device, code_version
        torch.manual_seed(config.seed)
        self.run = _new_run(config, _network(config, init, device), len(data.samples))
        center = center_intensity(np.stack([data.cache.crop(i) for i in range(len(data.samples))]))
        self.ranks = difficulty_ranks(center, data.labels)
        self.curriculum = Curriculum(config.curriculum_start, config.curriculum_ramp_epochs)
        self.train_mask = np.zeros(len(data.samples), dtype=bool)
        self.train_mask[data.train] = True
        self.checkpoint_path = out_dir / CHECKPOINT_DIR / LAST_CHECKPOINT

    def restore(self) -> None:
        """Continue from the last checkpoint in ``out_dir``, when there is one."""
        if self.checkpoint_path.is_file():
            _restore_checkpoint(self.checkpoint_path, self.run, self.config)

    def pool(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The positives and negatives ``epoch`` draws from."""
        return epoch_pool(
            epoch, self.train_mask, self.ranks, self.curriculum, self.run.online, self.data.labels
        )

    def keep(self, result: _Epoch, elapsed_s: float) -> ModelCard | None:
        """Save the epoch's weights with their card if they are the ones kept; else None."""
        if not _selects(result, self.run, self.config):
            return None
        record = _training_record(result, self.data, self.config, self.device, elapsed_s)
        return save_model(
            self.out_dir,
            self.run.network,
            self.config.patch,
            code_version=self.code_version,
            training=record,
        )

    def fit(self, progress: bool = True) -> ModelCard:
        """Run the remaining epochs; returns the kept model's card (with the whole history)."""
        run, config = self.run, self.config
        started = time.perf_counter() - sum(h.get("epoch_s", 0.0) for h in run.history)
        card: ModelCard | None = None
        for epoch in range(run.start_epoch, config.epochs):
            result = _run_epoch(
                run, epoch, self.pool(epoch), self.data, config, self.device, progress
            )
            # JSON has no NaN: a metric a held-out set cannot give (AUC without negatives) is
            # left out rather than written as null.
            run.history.append({k: v for k, v in result.row.items() if math.isfinite(v)})
            _log_epoch(result, config)
            card = self.keep(result, time.perf_counter() - started) or card
            _save_checkpoint(self.checkpoint_path, run, config, epoch)
        return _final_card(self.out_dir, card, run.history, time.perf_counter() - started)


def train(
    config: TrainConfig,
    data: TrainData,
    out_dir: Path,
    *,
    device_name: str = "auto",
    code_version: str,
    resume: bool = False,
    progress: bool = True,
    init: NoduleNet | None = None,
) -> ModelCard:
    """Train, validate every epoch, keep the best model in ``out_dir``; returns its card.

    ``init``: a trained network to start from (fine-tuning); its architecture must be the
    config's, and ``config.init_fingerprint`` should name it so the card records it.
    """
    trainer = Trainer(
        config,
        data,
        out_dir,
        device=resolve_device(device_name),
        code_version=code_version,
        init=init,
    )
    if resume:
        trainer.restore()
    return trainer.fit(progress)
