"""The network's mask branch against region growing, on the real LIDC VOIs (patient-grouped CV).

For each VOI of ``SHARED/lidc_vois`` (held-out patients skipped): the image patch from the one
patch function (``model.preprocessing``) at the LUNA16 centre with ``outside="edge"`` (the VOIs
are crops), and the readers' mask sampled onto the same patch grid by the same function (the
mask volume's 0/1 values through ``patch_hu`` with the window [0, 1], then >= 0.5).

Five patient-grouped folds (``GroupKFold`` on the patient id): for each, a
``NoduleNet(segmentation=True)`` is trained on the other folds' VOIs with ``segmentation_loss``
alone (random flips along the three axes and axial rot90), starting from the encoder and decoder
of ``--init`` (a model folder, ``model.nn.checkpoint.load_model``) when given, else from scratch.
Its mask of each held-out VOI (``model.clinical.measure.measure_patch_mask``: >= 0.5, the component
at the patch centre) is scored against the readers' mask on the patch grid (Dice), and its mean
diameter ((long + short axial axis) / 2, ``model.clinical.measure``) against the LUNA16
``diameter_mm``. Region growing from the same centre (``model.clinical.measure.grow_at`` on the
VOI) is scored on the same nodules: its Dice on the VOI grid (as ``bench_measure``) and on the
patch grid, its diameter. Both are broken down by diameter and by the readers' Texture (1-2
ground-glass, 3-4 part-solid, 5 solid).

    python -m bench.bench_mask_head [--shared ../shared/data] [--init models/demo]
        [--out bench/results/mask_head_lidc_vois.json]
"""

from __future__ import annotations

import argparse
import csv
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from sklearn.model_selection import GroupKFold

from bench.common import cpu_model, now_utc, write_results
from indexer.data.synth.heldout import HELDOUT_PATIENTS
from model.clinical.measure import (
    MASK_CENTER_REACH_MM,
    MeasureError,
    grow_at,
    measure,
    measure_patch_mask,
    patch_geometry,
    sphericity,
)
from model.ct.open import load_volume
from model.ct.volume import CTVolume
from model.nn.checkpoint import load_model
from model.nn.loss import segmentation_loss
from model.nn.network import NetworkConfig, NoduleNet
from model.preprocessing import PatchSpec, extract_patch, mask_spec, patch_hu

logger = logging.getLogger("bench.mask_head")

FOLDS = 5
TYPES = ("ground-glass", "part-solid", "solid")
#: Diameter buckets (mm, LUNA16 ``diameter_mm``): [low, high).
DIAMETER_BUCKETS = ((0.0, 6.0), (6.0, 10.0), (10.0, 20.0), (20.0, float("inf")))
TARGETS = {"median_dice": 0.85, "share_with_mask": 0.95, "diameter_pearson_r": 0.90}

BoolArray = npt.NDArray[np.bool_]
F32Array = npt.NDArray[np.float32]


@dataclass
class Voi:
    """One VOI on the patch grid, with region growing's result on it."""

    row: int
    """Its row in ``nodules.csv`` (0-based); no patient id is written to the results."""
    patient_id: str
    center_xyz: tuple[float, float, float]
    diameter_mm: float
    texture: int
    image: F32Array
    """(D, H, W) the network's input (``extract_patch``)."""
    hu: F32Array
    """(D, H, W) the same patch in HU (``patch_hu``), for the type."""
    target: BoolArray
    """(D, H, W) the readers' mask on the patch grid."""
    readers_mean_mm: float
    """The readers' mask's mean diameter on the patch grid (this grid's ceiling)."""
    readers_at_border: bool
    """The readers' mask touches the patch's border (a nodule wider than the patch)."""
    readers_sphericity: float
    grown_mean_mm: float | None
    grown_dice_voi: float
    """Region growing's Dice with the readers' mask on the VOI's own grid (0 when refused)."""
    grown_dice_patch: float
    """The same on the patch grid (both masks sampled by the one patch function)."""


def texture_type(texture: int) -> str:
    """The readers' Texture rating as a type: 1-2 ground-glass, 3-4 part-solid, 5 solid."""
    return TYPES[0] if texture <= 2 else TYPES[1] if texture <= 4 else TYPES[2]


def dice(a: BoolArray, b: BoolArray) -> float:
    """Dice of two boolean masks (1 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else float(2 * int((a & b).sum()) / total)


def _patch_mask(mask: CTVolume, center: tuple[float, float, float], spec: PatchSpec) -> BoolArray:
    return np.asarray(patch_hu(mask, center, mask_spec(spec)) >= 0.5)


def _load_one(row: int, voi: dict[str, str], root: Path, spec: PatchSpec) -> Voi | None:
    image = load_volume(root / voi["image"])
    mask_volume = load_volume(root / voi["mask"])
    readers_voi = mask_volume.hu_zyx > 0.5
    center = (float(voi["coordX"]), float(voi["coordY"]), float(voi["coordZ"]))
    if not image.geometry.contains_world(center):
        logger.warning("row %d: the LUNA16 centre lies outside its VOI; skipped", row)
        return None
    target = _patch_mask(mask_volume, center, spec)
    if not target.any():
        logger.warning("row %d: the readers' mask is empty on the patch grid; skipped", row)
        return None
    grid = patch_geometry(center, spec)
    hu = patch_hu(image, center, spec)
    border = target.copy()
    border[1:-1, 1:-1, 1:-1] = False
    grown_mean, dice_voi, dice_patch = None, 0.0, 0.0
    try:
        grown = grow_at(image, center)
    except MeasureError as e:
        logger.warning("row %d: region growing: %s", row, e)
        grown = None
    if grown is not None:
        grown_mean = grown.measurement.mean_diameter_mm
        full = np.zeros(image.geometry.shape_zyx, dtype=bool)
        (z0, y0, x0), (dz, dy, dx) = grown.start_zyx, grown.mask_zyx.shape
        full[z0 : z0 + dz, y0 : y0 + dy, x0 : x0 + dx] = grown.mask_zyx
        dice_voi = dice(full, readers_voi)
        grown_volume = CTVolume(full.astype(np.float32), image.geometry)
        dice_patch = dice(_patch_mask(grown_volume, center, spec), target)
    return Voi(
        row=row,
        patient_id=voi["patient_id"],
        center_xyz=center,
        diameter_mm=float(voi["diameter_mm"]),
        texture=round(float(voi["Texture_value"])),
        image=extract_patch(image, center, spec),
        hu=hu,
        target=target,
        readers_mean_mm=measure(target, grid).mean_diameter_mm,
        readers_at_border=bool(border.any()),
        readers_sphericity=sphericity(target, grid),
        grown_mean_mm=grown_mean,
        grown_dice_voi=dice_voi,
        grown_dice_patch=dice_patch,
    )


def load_vois(root: Path, spec: PatchSpec, limit: int | None = None) -> tuple[list[Voi], int, int]:
    """Every usable VOI not of a held-out patient (the first ``limit`` rows: a smoke test); also
    the rows read and the held-out rows skipped.

    Unusable (skipped, logged): a LUNA16 centre outside its VOI (one row today), a readers' mask
    that leaves nothing on the patch grid.
    """
    with (root / "nodules.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:limit]
    kept = [(i, r) for i, r in enumerate(rows) if r["patient_id"] not in HELDOUT_PATIENTS]
    vois = [v for v in (_load_one(i, r, root, spec) for i, r in kept) if v is not None]
    return vois, len(rows), len(rows) - len(kept)


def _augment(
    x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random flips (each axis) and axial rot90 on each sample's image and mask."""
    xs, ys = [], []
    for i in range(x.shape[0]):
        a, b = x[i], y[i]  # (1, D, H, W)
        flips = [d for d in (1, 2, 3) if rng.random() < 0.5]
        if flips:
            a, b = a.flip(flips), b.flip(flips)
        k = int(rng.integers(4))
        if k:
            a, b = a.rot90(k, dims=(2, 3)), b.rot90(k, dims=(2, 3))
        xs.append(a)
        ys.append(b)
    return torch.stack(xs), torch.stack(ys)


@dataclass(frozen=True)
class TrainOptions:
    """How each fold's network is trained (recorded in the results)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    # oneDNN's 3-D convolutions run about twice as fast on CPU in this layout.
    return t.contiguous(memory_format=torch.channels_last_3d)


def train_fold(
    net: NoduleNet, train: Sequence[Voi], options: TrainOptions, seed: int
) -> list[float]:
    """Train the mask branch (and the encoder/decoder under it) on ``train``; per-epoch losses."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x_all = torch.from_numpy(np.stack([v.image for v in train]))[:, None]
    y_all = torch.from_numpy(np.stack([v.target for v in train]).astype(np.float32))[:, None]
    steps_per_epoch = int(np.ceil(len(train) / options.batch_size))
    optimiser = torch.optim.AdamW(
        net.parameters(), lr=options.lr, weight_decay=options.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=options.lr, total_steps=options.epochs * steps_per_epoch, pct_start=0.15
    )
    net.train()
    losses = []
    for epoch in range(options.epochs):
        order = rng.permutation(len(train))
        total = 0.0
        for step in range(steps_per_epoch):
            idx = torch.from_numpy(
                order[step * options.batch_size : (step + 1) * options.batch_size]
            )
            x, y = _augment(x_all[idx], y_all[idx], rng)
            logits = net.segment(_channels_last(x))
            loss = segmentation_loss(logits, y, torch.ones(len(idx), dtype=torch.bool))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
            total += float(loss.item()) * len(idx)
        losses.append(total / len(train))
        logger.info("  epoch %d/%d: loss %.4f", epoch + 1, options.epochs, losses[-1])
    return losses


#: Test-time flips: every subset of the three axes (of a (N, 1, D, H, W) batch).
FLIPS: tuple[tuple[int, ...], ...] = ((), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4))


@torch.no_grad()
def predict(
    net: NoduleNet, vois: Sequence[Voi], *, flips: bool = True, batch_size: int = 16
) -> list[F32Array]:
    """Mask probabilities (D, H, W) of each VOI's patch; with ``flips`` the mean over ``FLIPS``."""
    net.eval()
    out: list[F32Array] = []
    for start in range(0, len(vois), batch_size):
        x = torch.from_numpy(np.stack([v.image for v in vois[start : start + batch_size]]))[:, None]
        total = torch.zeros_like(x)
        for dims in FLIPS if flips else ((),):
            flipped = x.flip(dims) if dims else x
            prob = torch.sigmoid(net.segment(_channels_last(flipped))).float()
            total += prob.flip(dims) if dims else prob
        mean = total / (len(FLIPS) if flips else 1)
        out.extend(np.asarray(p, dtype=np.float32) for p in mean[:, 0].numpy())
    return out


def initial_network(
    init: Path | None,
) -> tuple[Callable[[], NoduleNet], PatchSpec, dict[str, Any]]:
    """A factory of fresh segmenting networks (from ``init``'s weights where they fit), the spec."""
    if init is None:
        config = NetworkConfig(segmentation=True)
        return (
            lambda: NoduleNet(config),
            PatchSpec(outside="edge"),
            {"init": None, "arch": config.model_dump(mode="json")},
        )
    source, card = load_model(init)
    config = card.arch.model_copy(update={"segmentation": True})
    state = source.state_dict()
    probe = NoduleNet(config).state_dict()
    copied = [k for k, v in probe.items() if k in state and state[k].shape == v.shape]

    def make() -> NoduleNet:
        net = NoduleNet(config)
        net.load_state_dict({k: state[k] for k in copied}, strict=False)
        return net

    spec = card.preprocessing.model_copy(update={"outside": "edge"})
    record = {
        "init": str(init),
        "init_fingerprint": card.fingerprint,
        "arch": config.model_dump(mode="json"),
        "state_entries_copied": len(copied),
        "state_entries_new": sorted({k.split(".")[0] for k in probe if k not in copied}),
    }
    return make, spec, record


@dataclass
class Result:
    """One held-out VOI's mask-head outcome."""

    voi: Voi
    fold: int
    dice: float
    """0 when the mask head gives no mask."""
    mean_mm: float | None
    sphericity: float | None


def _pearson(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Pearson r; None for fewer than 3 pairs or a constant side."""
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _diameter(estimate: Sequence[float], reference: Sequence[float]) -> dict[str, Any]:
    e, r = np.asarray(estimate, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if len(e) == 0:
        return {"n": 0}
    return {
        "n": len(e),
        "pearson_r": _pearson(e.tolist(), r.tolist()),
        "mean_abs_diff_mm": float(np.abs(e - r).mean()),
        "mean_signed_diff_mm": float((e - r).mean()),
    }


def _summary(results: Sequence[Result]) -> dict[str, Any]:
    """Mask head and region growing on the same nodules."""
    n = len(results)
    if n == 0:
        return {"n": 0}
    head = [r for r in results if r.mean_mm is not None]
    grown = [r for r in results if r.voi.grown_mean_mm is not None]
    head_dice = np.array([r.dice for r in results])
    grown_dice = np.array([r.voi.grown_dice_patch for r in results])
    return {
        "n": n,
        "mask_head": {
            "share_with_mask": len(head) / n,
            "dice_median": float(np.median(head_dice)),
            "dice_mean": float(head_dice.mean()),
            "dice_median_of_masked": float(np.median([r.dice for r in head])) if head else None,
            "mean_diameter_vs_luna16": _diameter(
                [r.mean_mm for r in head if r.mean_mm is not None],
                [r.voi.diameter_mm for r in head],
            ),
        },
        "region_growing": {
            "share_with_mask": len(grown) / n,
            "dice_median": float(np.median(grown_dice)),
            "dice_mean": float(grown_dice.mean()),
            "dice_median_of_masked": (
                float(np.median([r.voi.grown_dice_patch for r in grown])) if grown else None
            ),
            "dice_median_voi_grid": float(np.median([r.voi.grown_dice_voi for r in results])),
            "mean_diameter_vs_luna16": _diameter(
                [r.voi.grown_mean_mm for r in grown if r.voi.grown_mean_mm is not None],
                [r.voi.diameter_mm for r in grown],
            ),
        },
    }


def _better(summary: dict[str, Any]) -> dict[str, str]:
    """Which method does better on each score of a summary (``tie`` within 0.005)."""
    if summary.get("n", 0) == 0:
        return {}
    h, g = summary["mask_head"], summary["region_growing"]
    out = {}
    pairs = {
        "dice_median": (h["dice_median"], g["dice_median"], True),
        "share_with_mask": (h["share_with_mask"], g["share_with_mask"], True),
        "diameter_mean_abs_diff": (
            h["mean_diameter_vs_luna16"].get("mean_abs_diff_mm"),
            g["mean_diameter_vs_luna16"].get("mean_abs_diff_mm"),
            False,
        ),
    }
    for name, (a, b, higher) in pairs.items():
        if a is None or b is None:
            continue
        if abs(a - b) < 0.005:
            out[name] = "tie"
        else:
            out[name] = "mask_head" if (a > b) == higher else "region_growing"
    return out


def _on_grown(results: Sequence[Result]) -> dict[str, Any]:
    """Both methods on only the nodules region growing gave a mask (its refusals aside)."""
    grown = [r for r in results if r.voi.grown_mean_mm is not None]
    summary = _summary(grown)
    if not grown:
        return summary
    wins = np.mean([r.voi.grown_dice_patch > r.dice for r in grown])
    return {**summary, "better": _better(summary), "share_region_growing_dice_higher": float(wins)}


def _by(results: Sequence[Result], key: Callable[[Result], str], names: Sequence[str]) -> Any:
    out = {}
    for name in names:
        chosen = [r for r in results if key(r) == name]
        summary = _summary(chosen)
        out[name] = {**summary, "better": _better(summary), "on_grown": _on_grown(chosen)}
    return out


def _bucket(d: float) -> str:
    for low, high in DIAMETER_BUCKETS:
        if low <= d < high:
            return _bucket_name(low, high)
    raise ValueError(d)


def _bucket_name(low: float, high: float) -> str:
    return f">= {low:g} mm" if high == float("inf") else f"{low:g}-{high:g} mm"


def run(
    shared: Path, init: Path | None, options: TrainOptions, limit: int | None = None
) -> dict[str, Any]:
    """Load, cross-validate, score; returns the results record."""
    started = time.perf_counter()
    torch.set_num_threads(2)
    make_network, spec, init_record = initial_network(init)
    vois, n_rows, n_heldout = load_vois(shared / "lidc_vois", spec, limit)
    load_s = time.perf_counter() - started
    logger.info(
        "%d VOIs on the patch grid in %.0f s (%d held-out skipped)", len(vois), load_s, n_heldout
    )
    groups = [v.patient_id for v in vois]
    results: list[Result] = []
    folds = []
    for fold, (train_idx, test_idx) in enumerate(
        GroupKFold(n_splits=FOLDS).split(np.zeros(len(vois)), groups=groups)
    ):
        fold_start = time.perf_counter()
        train = [vois[i] for i in train_idx]
        test = [vois[i] for i in test_idx]
        assert not {v.patient_id for v in train} & {v.patient_id for v in test}
        logger.info("fold %d: %d train / %d test VOIs", fold, len(train), len(test))
        net = make_network()
        net.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
        losses = train_fold(net, train, options, seed=options.seed + fold)
        train_s = time.perf_counter() - fold_start
        fold_results = _measured(test, predict(net, test), spec, fold)
        results.extend(fold_results)
        folds.append(
            {
                "fold": fold,
                "n_train": len(train),
                "n_test": len(test),
                "n_test_patients": len({v.patient_id for v in test}),
                "train_loss_per_epoch": losses,
                "train_s": train_s,
                "fold_s": time.perf_counter() - fold_start,
                **_summary(fold_results),
            }
        )
    overall = _summary(results)
    head = overall["mask_head"]
    masked = [r for r in results if r.sphericity is not None]
    record = {
        "benchmark": "bench_mask_head",
        "machine": cpu_model(),
        "date": now_utc(),
        "torch_threads": torch.get_num_threads(),
        "n_rows": n_rows,
        "n_heldout_rows_skipped": n_heldout,
        "n_vois": len(vois),
        "n_rows_unusable": n_rows - n_heldout - len(vois),
        "n_patients": len(set(groups)),
        "folds": FOLDS,
        "split": "sklearn GroupKFold(n_splits=5) on patient_id",
        "patch_spec": spec.model_dump(mode="json"),
        "mask_center_reach_mm": MASK_CENTER_REACH_MM,
        "training": {
            "loss": "segmentation_loss (BCE + soft Dice) only",
            "augmentation": "random flip of each axis, random axial rot90",
            "test_time": "mean probability over the 8 flips of the three axes",
            "optimiser": "AdamW, OneCycle",
            "epochs": options.epochs,
            "batch_size": options.batch_size,
            "lr": options.lr,
            "weight_decay": options.weight_decay,
            "seed": options.seed,
            **init_record,
        },
        "targets": _targets(head),
        "overall": {**overall, "better": _better(overall), "on_grown": _on_grown(results)},
        "readers_mask_on_patch_grid": {
            "mean_diameter_vs_luna16": _diameter(
                [v.readers_mean_mm for v in vois], [v.diameter_mm for v in vois]
            ),
            "n_touching_patch_border": sum(v.readers_at_border for v in vois),
        },
        "sphericity_mask_head_vs_readers_mask": {
            "n": len(masked),
            "pearson_r": _pearson(
                [r.sphericity for r in masked if r.sphericity is not None],
                [r.voi.readers_sphericity for r in masked],
            ),
            "mean_mask_head": float(np.mean([r.sphericity for r in masked])) if masked else None,
            "mean_readers": (
                float(np.mean([r.voi.readers_sphericity for r in masked])) if masked else None
            ),
        },
        "by_diameter": _by(
            results,
            lambda r: _bucket(r.voi.diameter_mm),
            [_bucket_name(low, high) for low, high in DIAMETER_BUCKETS],
        ),
        "by_texture": _by(results, lambda r: texture_type(r.voi.texture), TYPES),
        "per_fold": folds,
        "per_nodule": [
            {
                "row": r.voi.row,
                "fold": r.fold,
                "diameter_mm": r.voi.diameter_mm,
                "texture": r.voi.texture,
                "head_dice": round(r.dice, 4),
                "head_mean_mm": r.mean_mm,
                "grown_dice_patch": round(r.voi.grown_dice_patch, 4),
                "grown_mean_mm": r.voi.grown_mean_mm,
                "readers_mean_mm_patch": r.voi.readers_mean_mm,
            }
            for r in sorted(results, key=lambda r: r.voi.row)
        ],
        "load_s": load_s,
        "run_s": time.perf_counter() - started,
    }
    return record


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summary_table(record: dict[str, Any]) -> str:
    """A short text table: per fold, overall and per bucket, mask head vs region growing."""
    lines = [
        f"{'':<22} {'n':>4} | {'head: dice':>10} {'masked':>6} {'r':>5} {'MAD':>5} | "
        f"{'grow: dice':>10} {'masked':>6} {'r':>5} {'MAD':>5}"
    ]

    def line(name: str, s: dict[str, Any]) -> None:
        if s.get("n", 0) == 0:
            return
        h, g = s["mask_head"], s["region_growing"]
        hd, gd = h["mean_diameter_vs_luna16"], g["mean_diameter_vs_luna16"]
        lines.append(
            f"{name:<22} {s['n']:>4} | {h['dice_median']:>10.3f} {h['share_with_mask']:>6.2f} "
            f"{_fmt(hd.get('pearson_r')):>5} {_fmt(hd.get('mean_abs_diff_mm'), 1):>5} | "
            f"{g['dice_median']:>10.3f} {g['share_with_mask']:>6.2f} "
            f"{_fmt(gd.get('pearson_r')):>5} {_fmt(gd.get('mean_abs_diff_mm'), 1):>5}"
        )

    for f in record["per_fold"]:
        line(f"fold {f['fold']}", f)
    line("overall", record["overall"])
    for name, s in record["by_diameter"].items():
        line(f"diameter {name}", s)
    for name, s in record["by_texture"].items():
        line(name, s)
    return "\n".join(lines)


def _measured(
    vois: Sequence[Voi], probabilities: Sequence[F32Array], spec: PatchSpec, fold: int
) -> list[Result]:
    """Each VOI's outcome from its mask probabilities."""
    results = []
    for voi, prob in zip(vois, probabilities, strict=True):
        found = measure_patch_mask(prob, voi.center_xyz, spec, voi.hu)
        if found is None:
            results.append(Result(voi, fold, 0.0, None, None))
            continue
        mask = found.mask_zyx
        results.append(
            Result(
                voi,
                fold,
                dice(mask, voi.target),
                found.measurement.mean_diameter_mm,
                sphericity(mask, found.geometry),
            )
        )
    return results


def _targets(head: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's three targets beside the mask head's values."""
    return {
        "median_dice": {"target": TARGETS["median_dice"], "value": head["dice_median"]},
        "share_with_mask": {
            "target": TARGETS["share_with_mask"],
            "value": head["share_with_mask"],
        },
        "diameter_pearson_r": {
            "target": TARGETS["diameter_pearson_r"],
            "value": head["mean_diameter_vs_luna16"].get("pearson_r"),
        },
    }


def run_trained(shared: Path, model_dir: Path, limit: int | None = None) -> dict[str, Any]:
    """A trained segmenting model that never saw the VOIs (``train --segmentation-weight``),
    scored on every VOI as it is: what the service's mask is on real nodules."""
    started = time.perf_counter()
    torch.set_num_threads(2)
    net, card = load_model(model_dir)
    if not net.config.segmentation:
        raise SystemExit(f"{model_dir}: the model has no mask branch")
    net.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    # VOIs are crops: "edge" stands in for the CT around them (as the fold models had it).
    spec = card.preprocessing.model_copy(update={"outside": "edge"})
    vois, n_rows, n_heldout = load_vois(shared / "lidc_vois", spec, limit)
    results = _measured(vois, predict(net, vois), spec, -1)
    overall = _summary(results)
    head = overall["mask_head"]
    return {
        "benchmark": "bench_mask_head --model",
        "machine": cpu_model(),
        "date": now_utc(),
        "torch_threads": torch.get_num_threads(),
        "model": str(model_dir),
        "model_fingerprint": card.fingerprint,
        "training_options": card.training.options if card.training else None,
        "n_rows": n_rows,
        "n_heldout_rows_skipped": n_heldout,
        "n_vois": len(vois),
        "n_patients": len({v.patient_id for v in vois}),
        "patch_spec": spec.model_dump(mode="json"),
        "mask_center_reach_mm": MASK_CENTER_REACH_MM,
        "targets": _targets(head),
        "overall": overall,
        "run_s": time.perf_counter() - started,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--init", type=Path, default=None, help="model folder to start from")
    parser.add_argument("--out", type=Path, default=Path("bench/results/mask_head_lidc_vois.json"))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="first N rows only (smoke test)")
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="no cross-validation: score this trained segmenting model on every VOI",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.model is not None:
        trained = run_trained(args.shared, args.model, args.limit)
        write_results(args.out, trained)
        logger.info("targets: %s; wrote %s", trained["targets"], args.out)
        return
    options = TrainOptions(args.epochs, args.batch_size, args.lr, args.weight_decay, args.seed)
    record = run(args.shared, args.init, options, args.limit)
    write_results(args.out, record)
    logger.info(
        "dice: median vs the readers' mask on the patch grid (refused = 0); masked: share "
        "with a mask; r, MAD: mean diameter vs LUNA16 diameter_mm"
    )
    logger.info("%s", summary_table(record))
    logger.info("targets: %s", record["targets"])
    logger.info("run time %.0f s; wrote %s", record["run_s"], args.out)


if __name__ == "__main__":
    main()
