"""Benchmark: embedding throughput of the default model architecture on this machine.

Measures patches/s at batch 1 and 64 for torch's default CPU path (``NoduleNet.embed``) and for
the ``Embedder`` (oneDNN on CPU, bfloat16 autocast on CUDA), checks both give the same vectors,
and writes the results with the machine and the date.

Run: ``.venv/bin/python -m bench.bench_embed [--threads 2] [--device auto]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from bench.common import cpu_model, now_utc, write_results
from indexer.train.trainer import TrainConfig
from model.nn.checkpoint import save_model
from model.nn.embedder import Embedder
from model.nn.network import NetworkConfig, NoduleNet

logger = logging.getLogger("bench_embed")


def per_patch_ms(fn: Callable[[], object], n_patches: int, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / n_patches * 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("bench/results/embed_throughput.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    config = TrainConfig()
    torch.manual_seed(0)
    network = NoduleNet(NetworkConfig(width=config.width, levels=config.levels)).eval()
    params = sum(p.numel() for p in network.parameters())
    shape = config.patch.patch_shape_zyx
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        save_model(Path(tmp), network, config.patch, code_version="bench")
        embedder = Embedder.from_model_dir(Path(tmp), args.device, batch_size=64)
        for batch in (1, 64):
            patches = np.random.default_rng(batch).random((batch, *shape), dtype=np.float32)
            x = torch.from_numpy(patches)[:, None]
            repeats = 20 if batch == 1 else 5
            with torch.inference_mode():
                default_ms = per_patch_ms(partial(network.embed, x), batch, repeats)
                reference = network.embed(x).numpy()
            fast_ms = per_patch_ms(partial(embedder.embed_patches, patches), batch, repeats)
            diff = float(np.abs(embedder.embed_patches(patches) - reference).max())
            results[f"batch_{batch}"] = {
                "default_cpu_path_ms_per_patch": default_ms,
                "embedder_ms_per_patch": fast_ms,
                "embedder_patches_per_s": 1000.0 / fast_ms,
                "max_abs_difference": diff,
            }
            logger.info(
                "batch %d: default %.2f ms/patch, embedder %.2f ms (%.0f patches/s), diff %.1e",
                batch,
                default_ms,
                fast_ms,
                1000.0 / fast_ms,
                diff,
            )
        device = str(embedder.device)
    record = {
        "benchmark": f"embedding {shape} patches, NoduleNet width {config.width}, {params} params",
        "date": now_utc(),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "torch_threads": args.threads,
            "device": device,
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "results": results,
    }
    write_results(args.out, record)
    logger.info("-> %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
