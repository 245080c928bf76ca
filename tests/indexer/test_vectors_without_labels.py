"""A nodule's vector comes from its image alone: the catalogue's labels never reach it (issue 29).

The same data and model built with and without ``--labels`` store byte-identical vectors, so a
query (which has no labels) is embedded in the same space as the catalogue it searches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.cli import main as nodule_index
from indexer.evaluate.loading import load_nodules
from model.store.catalog import Catalog


def _vectors(index: Path) -> dict[tuple[str, tuple[float, float, float]], bytes]:
    catalog = Catalog.open(index)
    try:
        nodules = load_nodules(catalog, None)
    finally:
        catalog.close()
    return {
        (uid, center): np.ascontiguousarray(vector).tobytes()
        for uid, center, vector in zip(
            nodules.series_uid, nodules.center_xyz, nodules.vectors, strict=True
        )
    }


@pytest.mark.parametrize("model", ["app_model", "search_model"])
def test_vectors_are_byte_identical_with_and_without_labels(
    synth_set: Path, synth_labels: Path, model: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Also for a vector with measured and learned blocks: they read the recorded diameter
    (the size measurement), never the ratings or labels."""
    labels = synth_labels
    model_dir: Path = request.getfixturevalue(model)
    build = ["build", "--data", str(synth_set), "--model", str(model_dir), "--no-progress"]
    build += ["--workers", "1"]
    with_labels, without = tmp_path / "with", tmp_path / "without"
    assert nodule_index([*build, "--index", str(with_labels), "--labels", str(labels)]) == 0
    assert nodule_index([*build, "--index", str(without)]) == 0
    labelled = _vectors(with_labels)
    plain = _vectors(without)
    assert len(labelled) > 0
    assert labelled.keys() == plain.keys()
    assert all(labelled[key] == plain[key] for key in labelled)
    # And the labels did reach the first catalogue (else the comparison proves nothing).
    catalog = Catalog.open(with_labels)
    try:
        assert len(load_nodules(catalog, None).labelled) > 0
    finally:
        catalog.close()
