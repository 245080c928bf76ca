"""The baselines every evaluation runs beside the network, on the same nodules and queries.

Raw intensities, the same network with random weights, the diameter alone, diameter + raw,
diameter + density, and the measured descriptors of the service's mask (``docs/protocol.md``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from indexer.evaluate.loading import CatalogNodules, CutRows, NeighborSearch
from indexer.evaluate.scores import (
    loo_neighbors,
    loo_neighbors_by_measurements,
    loo_neighbors_by_size,
    loo_neighbors_by_size_and_vectors,
    loo_neighbors_of_queries,
    normalise,
)
from indexer.search.data import profiles_at
from model.clinical.descriptors import DESCRIPTOR_NAMES
from model.nn.embedder import Embedder
from model.nn.network import NoduleNet

BASELINES = ("raw", "random_init", "diameter", "diameter_raw", "diameter_density", "measured")


#: How each baseline is named in report.md.
BASELINE_NAMES = {
    "raw": "raw intensities",
    "random_init": "same network, random weights",
    "diameter": "diameter alone (nearest by diameter_mm)",
    "diameter_raw": "diameter + raw (mean of the two similarities)",
    "diameter_density": "diameter + density (mean HU in 0.75 x radius; z-scored, Euclidean)",
    "measured": "measured descriptors (7 numbers off the service's mask; z-scored, Euclidean)",
    "features": "network features alone (the paper's mid-features)",
    "estimated_sizes": "the same vector, each query's size estimated from its image",
}


#: Shown first for a model whose vector has a search space (``model.nn.search_space``): its
#: features alone (the paper's claim stays testable) and its click-only path.
SEARCH_ROWS = ("features", "estimated_sizes")


#: What the measured-descriptors baseline reads off each nodule (report.md says it once).
MEASURED_NOTE = (
    "Measured descriptors: the mean diameter, volume, mean and 10th / 90th-percentile HU, solid "
    "fraction and sphericity of the nodule's mask as the service finds it (the model's mask "
    "branch; region growing for a model without one); a nodule without a mask sits at the "
    "column means."
)


def raw_features(patches: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Raw-intensity baseline: windowed patches 2x average-pooled, flattened, L2-normalised."""
    x = torch.from_numpy(patches[:, None])
    pooled = torch.nn.functional.avg_pool3d(x, 2).flatten(1).numpy()
    return normalise(pooled).astype(np.float32)


def random_init_features(
    embedder: Embedder, patches: npt.NDArray[np.float32], seed: int
) -> npt.NDArray[np.float32]:
    """The same architecture, random weights (PyTorch's default initialisation, seeded)."""
    torch.manual_seed(seed)
    network = NoduleNet(embedder.card.arch)
    random = Embedder(network, embedder.card, str(embedder.device), batch_size=64)
    return random.embed_patches(patches)


def cosine_search(vectors: npt.ArrayLike) -> NeighborSearch:
    """Exact cosine search over feature vectors (the service's metric)."""
    return lambda patients, k: loo_neighbors(vectors, k, patients)


def size_search(diameters_mm: npt.ArrayLike) -> NeighborSearch:
    """Nearest by annotated diameter: what size alone says."""
    return lambda patients, k: loo_neighbors_by_size(diameters_mm, k, patients)


def size_and_raw_search(vectors: npt.ArrayLike, diameters_mm: npt.ArrayLike) -> NeighborSearch:
    """Raw intensities and size together: the baseline once size is known."""
    return lambda patients, k: loo_neighbors_by_size_and_vectors(vectors, diameters_mm, k, patients)


def baseline_searches(
    cut: CutRows, embedder: Embedder, diameter_mm: npt.NDArray[np.float64], seed: int
) -> dict[str, NeighborSearch]:
    """The searches the network is compared with (``BASELINES``), over the same queries.

    Besides image features: two numbers a radiologist reads off a nodule (the recorded diameter
    and the density sphere's mean HU), and the descriptors measured on its mask.
    """
    raw = raw_features(cut.patches)
    measured = np.column_stack([diameter_mm, cut.mean_hu])
    return {
        "raw": cosine_search(raw),
        "random_init": cosine_search(random_init_features(embedder, cut.patches, seed)),
        "diameter": size_search(diameter_mm),
        "diameter_raw": size_and_raw_search(raw, diameter_mm),
        "diameter_density": lambda patients, k: loo_neighbors_by_measurements(
            measured, k, patients
        ),
        "measured": lambda patients, k: loo_neighbors_by_measurements(cut.descriptors, k, patients),
    }


def search_space_rows(
    nodules: CatalogNodules,
    rows: npt.NDArray[np.int64],
    cut: CutRows,
    embedder: Embedder,
    features: npt.NDArray[np.float32],
) -> dict[str, NeighborSearch]:
    """For a vector with a search space: its features alone, and its click-only path.

    The click-only path: each query's vector read at the size the service estimates from its
    image (``find_nodule``'s mean diameter; its features alone where none is found), searched
    against the stored vectors (recorded sizes).
    """
    if embedder.card.search is None:
        return {}
    estimated = cut.descriptors[:, DESCRIPTOR_NAMES.index("mean_diameter_mm")]
    profiles = profiles_at(
        [nodules.source_path[nodules.series_uid[r]] for r in rows.tolist()],
        [nodules.center_xyz[r] for r in rows.tolist()],
        estimated.tolist(),
        embedder.card.preprocessing,
    )
    queries = embedder.compose(features, profiles)
    stored = nodules.vectors[rows]
    return {
        "features": cosine_search(features),
        "estimated_sizes": lambda patients, k: loo_neighbors_of_queries(
            queries, stored, k, patients
        ),
    }
