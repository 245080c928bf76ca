"""The FAISS index: explicit ids, inner product on L2-normalised vectors, checked shapes.

``exact`` is ``IndexIDMap2(IndexFlatIP)`` (exact cosine similarity); ``hnsw`` (graph, no training)
and ``ivf`` (inverted lists, trained k-means) trade a little recall for speed on large catalogues.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

IndexType = Literal["exact", "hnsw", "ivf"]
INDEX_TYPES: tuple[IndexType, ...] = ("exact", "hnsw", "ivf")


class IndexShapeError(ValueError):
    """Vectors or ids of the wrong shape, type or norm for the index."""


def check_vectors(vectors: npt.ArrayLike, dim: int) -> npt.NDArray[np.float32]:
    """(n, dim) float32, finite; returned C-contiguous."""
    x = np.asarray(vectors)
    if x.ndim != 2 or x.shape[1] != dim:
        raise IndexShapeError(f"vectors must have shape (n, {dim}), got {x.shape}")
    if x.dtype != np.float32:
        raise IndexShapeError(f"vectors must be float32, got {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise IndexShapeError("vectors contain NaN or infinite values")
    return np.ascontiguousarray(x)


def default_params(index_type: IndexType, n: int) -> dict[str, Any]:
    """Parameters recorded in the manifest; sized for ``n`` vectors."""
    if index_type == "hnsw":
        return {"M": 32, "efConstruction": 80, "efSearch": 128}
    if index_type == "ivf":
        nlist = max(1, min(int(4 * math.sqrt(max(n, 1))), max(1, n // 39)))
        return {"nlist": nlist, "nprobe": max(1, min(nlist, nlist // 16 or 1) * 2)}
    return {}


def build_index(
    vectors: npt.ArrayLike,
    ids: npt.ArrayLike,
    index_type: IndexType = "exact",
    params: dict[str, Any] | None = None,
) -> Any:
    """A FAISS index over ``vectors`` (n, d) float32 with int64 ``ids`` (n,)."""
    x = np.asarray(vectors)
    if x.ndim != 2:
        raise IndexShapeError(f"vectors must be 2-D, got {x.shape}")
    x = check_vectors(x, x.shape[1])
    id_array = np.ascontiguousarray(np.asarray(ids, dtype=np.int64))
    if id_array.shape != (len(x),) or len(np.unique(id_array)) != len(id_array):
        raise IndexShapeError("ids must be unique int64 with one id per vector")
    dim = x.shape[1]
    p = {**default_params(index_type, len(x)), **(params or {})}
    inner: Any
    if index_type == "exact":
        inner = faiss.IndexFlatIP(dim)
    elif index_type == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, int(p["M"]), faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = int(p["efConstruction"])
        inner.hnsw.efSearch = int(p["efSearch"])
    elif index_type == "ivf":
        quantizer = faiss.IndexFlatIP(dim)
        inner = faiss.IndexIVFFlat(quantizer, dim, int(p["nlist"]), faiss.METRIC_INNER_PRODUCT)
        inner.train(x)
        inner.nprobe = int(p["nprobe"])
    else:
        raise IndexShapeError(f"index type must be one of {INDEX_TYPES}, got {index_type!r}")
    index = faiss.IndexIDMap2(inner)
    if len(x):
        index.add_with_ids(x, id_array)
    return index


def set_search_params(index: Any, params: dict[str, Any]) -> None:
    """Apply recorded search-time parameters (efSearch, nprobe) to a loaded index."""
    inner = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    if "efSearch" in params and hasattr(inner, "hnsw"):
        inner.hnsw.efSearch = int(params["efSearch"])
    if "nprobe" in params and hasattr(inner, "nprobe"):
        inner.nprobe = int(params["nprobe"])


def index_ids(index: Any) -> npt.NDArray[np.int64]:
    """The ids of an ``IndexIDMap2`` in insertion order.

    SWIG registers ``std::vector<int64_t>`` once per process, the last module loaded winning:
    when SimpleITK (also SWIG) loads after faiss, ``index.id_map`` comes back as SimpleITK's
    ``VectorInt64``, a plain sequence without faiss's ``at()`` that ``faiss.vector_to_array``
    refuses; read it as a sequence then.
    """
    id_map = index.id_map
    try:
        return np.asarray(faiss.vector_to_array(id_map), dtype=np.int64)
    except (AssertionError, TypeError, AttributeError):
        return np.fromiter(id_map, dtype=np.int64, count=int(index.ntotal))


def save_index(index: Any, path: Path) -> None:
    """Write the index to ``path`` via a temp file, fsync'd, then renamed."""
    tmp = path.with_name(f".{path.name}.tmp")
    faiss.write_index(index, str(tmp))
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    tmp.replace(path)


def load_index(path: Path, params: dict[str, Any] | None = None) -> Any:
    """Read an index written by ``save_index`` and apply its search parameters."""
    index = faiss.read_index(str(path))
    set_search_params(index, params or {})
    return index


def to_gpu_if_available(index: Any) -> Any:
    """A GPU copy of the index when faiss-gpu and a GPU are present, else the index itself."""
    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        resources = faiss.StandardGpuResources()
        logger.info("FAISS search on GPU")
        return faiss.index_cpu_to_gpu(resources, 0, index)
    return index


def search(
    index: Any, queries: npt.ArrayLike, k: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Top-``k`` (similarities, ids) for (n, d) float32 queries; missing neighbours have id -1."""
    q = check_vectors(queries, int(index.d))
    if k < 1:
        raise IndexShapeError("k must be at least 1")
    scores, ids = index.search(q, min(k, max(int(index.ntotal), 1)))
    return np.asarray(scores, dtype=np.float32), np.asarray(ids, dtype=np.int64)


def set_search_threads(n: int) -> None:
    """OpenMP threads FAISS uses in this thread (one query runs faster on one thread)."""
    faiss.omp_set_num_threads(max(1, n))
