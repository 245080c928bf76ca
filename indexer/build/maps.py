"""The catalogue's 2-D map: a t-SNE of the nodule embeddings (the paper's Figure 2).

Computed once per catalogue version at build time and stored with the nodules, so the viewer and
the evaluation draw the same map without recomputing it. Deterministic for a given set of vectors.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
from sklearn.manifold import TSNE

logger = logging.getLogger(__name__)

#: Fewer points than this make no map (t-SNE needs perplexity < n).
MIN_POINTS = 5
#: scikit-learn's Barnes-Hut t-SNE takes minutes at 10^5 points and hours at 10^6.
MAX_POINTS = 50_000


def embedding_map(
    vectors: npt.ArrayLike, *, seed: int = 0, max_points: int = MAX_POINTS
) -> npt.NDArray[np.float64] | None:
    """``(n, 2)`` t-SNE coordinates of ``(n, d)`` unit vectors, or None when n is out of range.

    Perplexity is 30, or (n - 1) / 3 for small sets. Euclidean distance on unit vectors orders
    pairs as cosine similarity does, so the map shows the neighbourhoods the search uses.
    """
    v = np.asarray(vectors, dtype=np.float64)
    n = v.shape[0]
    if n < MIN_POINTS:
        return None
    if n > max_points:
        logger.warning("no 2-D map: %d nodules is more than the t-SNE limit of %d", n, max_points)
        return None
    perplexity = float(min(30.0, max(1.0, (n - 1) / 3.0)))
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        init="pca",
        learning_rate="auto",
        random_state=seed,
        n_jobs=1,
    )
    xy: npt.NDArray[np.float64] = tsne.fit_transform(v).astype(np.float64)
    return xy
