"""FP reduction with and without the mask branch: FROC/CPM of two models in one run.

Issue 28 asks that the auxiliary mask loss leave FP reduction no worse. Both models are scored
here on the same validation subset of the same data, with the trainer's own validation (the
LUNA16 FROC over every candidate of the subset's scans), one after the other in one process:

    python -m bench.bench_froc_mask --data data/synth --old models/demo --new models/seg

The difference's interval resamples the validation scans (a scan's candidates are not
independent), 2000 times.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from bench.common import cpu_model, now_utc, write_results
from indexer.data.luna import LunaPoint
from indexer.train.froc import froc
from indexer.train.samples import data_fingerprint
from indexer.train.trainer import TrainConfig, TrainData, predict, prepare_data, validate
from model.nn.checkpoint import load_model
from model.preprocessing import PatchSpec

logger = logging.getLogger(__name__)

RESULTS = Path(__file__).parent / "results" / "froc_mask_branch.json"
BOOTSTRAP = 2000


def _data(data_dir: Path, spec: PatchSpec, cache: Path) -> TrainData:
    """The trainer's split of ``data_dir`` (validation: its last subset) cut with ``spec``."""
    config = TrainConfig(patch=spec)
    return prepare_data(
        data_dir,
        config,
        val_subsets=None,
        cache_dir=cache,
        fingerprint=data_fingerprint(data_dir),
        progress=False,
    )


def _scan_bootstrap(
    data: TrainData,
    old: npt.NDArray[np.float64],
    new: npt.NDArray[np.float64],
    rng: np.random.Generator,
) -> dict[str, float]:
    """The CPM difference (new - old) with a 95% interval over resampled validation scans."""
    scans = sorted({data.samples[i].series_uid for i in data.val})
    members: dict[str, list[int]] = {s: [] for s in scans}
    for position, i in enumerate(data.val):
        members[data.samples[i].series_uid].append(position)
    differences = []
    for _ in range(BOOTSTRAP):
        drawn = rng.choice(len(scans), size=len(scans), replace=True)
        cpms = []
        for probs in (old, new):
            points, scores, names = [], [], []
            for k, s in enumerate(drawn.tolist()):
                name = f"{scans[s]}#{k}"  # a scan drawn twice counts twice
                names.append(name)
                for position in members[scans[s]]:
                    sample = data.samples[data.val[position]]
                    points.append(LunaPoint(name, sample.center_xyz))
                    scores.append(probs[position])
            annotations = [
                LunaPoint(f"{scans[s]}#{k}", a.center_xyz, diameter_mm=a.diameter_mm)
                for k, s in enumerate(drawn.tolist())
                for a in data.annotations
                if a.series_uid == scans[s]
            ]
            excluded = [
                LunaPoint(f"{scans[s]}#{k}", a.center_xyz, diameter_mm=a.diameter_mm)
                for k, s in enumerate(drawn.tolist())
                for a in data.excluded
                if a.series_uid == scans[s]
            ]
            cpms.append(froc(points, np.asarray(scores), annotations, names, excluded).cpm)
        differences.append(cpms[1] - cpms[0])
    low, high = np.percentile(differences, [2.5, 97.5])
    return {"mean": float(np.mean(differences)), "ci95_low": float(low), "ci95_high": float(high)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/synth"))
    parser.add_argument("--old", type=Path, default=Path("models/demo"))
    parser.add_argument("--new", type=Path, default=Path("models/seg"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    device = torch.device("cpu")
    record: dict[str, Any] = {
        "benchmark": "bench_froc_mask",
        "machine": cpu_model(),
        "date": now_utc(),
        "torch_threads": torch.get_num_threads(),
        "data": str(args.data),
        "data_fingerprint": data_fingerprint(args.data),
    }
    probabilities = []
    with tempfile.TemporaryDirectory() as cache:
        data = None
        for role, model_dir in (("old", args.old), ("new", args.new)):
            network, card = load_model(model_dir, "cpu")
            if data is None:
                data = _data(args.data, card.preprocessing, Path(cache))
            metrics, result = validate(network, data, device, batch=64, amp=False)
            probabilities.append(predict(network, data, data.val, device, 64, False))
            record[role] = {
                "model": str(model_dir),
                "fingerprint": card.fingerprint,
                "segmentation": network.config.segmentation,
                "training_options": card.training.options if card.training else None,
                "cpm": result.cpm,
                "fp_per_scan": list(result.fp_per_scan),
                "sensitivity": list(result.sensitivity),
                **metrics,
            }
            logger.info("%s (%s): CPM %.3f %s", role, model_dir, result.cpm, metrics)
        assert data is not None
        record["n_val_scans"] = len({data.samples[i].series_uid for i in data.val})
        record["n_val_candidates"] = len(data.val)
        record["cpm_new_minus_old"] = _scan_bootstrap(
            data, probabilities[0], probabilities[1], np.random.default_rng(0)
        )
    write_results(args.out, record)
    logger.info("CPM new - old: %s; written to %s", record["cpm_new_minus_old"], args.out)


if __name__ == "__main__":
    main()
