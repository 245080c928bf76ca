"""Benchmark: train the default model on a synthetic set and record time, AUC and FROC.

Run: ``.venv/bin/python -m bench.bench_train --data data/synth [--out-model /tmp/bench-model]``.
Writes ``bench/results/train_synthetic.json`` with the machine and the date.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import torch

from bench.common import cpu_model, now_utc, write_results
from indexer.cli import main as nodule_index
from model.nn.card import read_card

logger = logging.getLogger("bench_train")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("bench/results/train_synthetic.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        code = nodule_index(
            [
                "train",
                "--data",
                str(args.data),
                "--out",
                tmp,
                "--device",
                args.device,
                "--no-progress",
            ]
        )
        wall = time.perf_counter() - started
        if code != 0:
            return code
        card = read_card(Path(tmp))
    training = card.training
    assert training is not None
    synth = args.data / "synth.json"
    record = {
        "benchmark": "nodule-index train with default options",
        "date": now_utc(),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "device": training.device,
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "data": json.loads(synth.read_text())["counts"] if synth.is_file() else str(args.data),
        "wall_s_including_patch_cache": wall,
        "train_time_s": training.train_time_s,
        "epochs": training.epochs,
        "best_epoch": training.best_epoch + 1,
        "val_subsets": list(training.val_subsets),
        "val_auc": training.metrics.get("val_auc"),
        "val_auc_goal": 0.95,
        "froc": training.froc.model_dump() if training.froc else None,
        "card": card.summary(),
    }
    write_results(args.out, record)
    logger.info("-> %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
