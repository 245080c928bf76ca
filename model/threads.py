"""The one place that sets how many CPU threads torch and FAISS compute with.

torch's intra-op thread count is process-wide. FAISS's OpenMP count is per calling thread, and
torch's oneDNN kernels share that OpenMP runtime, so setting FAISS's count in a thread changes
torch's there too: ``searching`` gives torch its own count back after each search.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from model.store.vector_index import set_search_threads


@dataclass(frozen=True)
class ThreadPolicy:
    """CPU threads for torch (the network) and FAISS (the search); at least 1 each."""

    torch_threads: int = 1
    faiss_threads: int = 1

    @classmethod
    def all_cores(cls) -> ThreadPolicy:
        """Every core for both: batch jobs (training, index builds) that own the machine."""
        n = os.cpu_count() or 1
        return cls(torch_threads=n, faiss_threads=n)

    def apply(self) -> None:
        """Set both counts (torch's for the process, FAISS's for the calling thread)."""
        torch.set_num_threads(max(1, self.torch_threads))
        set_search_threads(self.faiss_threads)

    @contextmanager
    def searching(self) -> Iterator[None]:
        """FAISS's count in this thread for the block; torch's count restored after it."""
        set_search_threads(self.faiss_threads)
        try:
            yield
        finally:
            torch.set_num_threads(max(1, self.torch_threads))
