"""The search vector's blocks in cross-validation: the nested choice and its pooled scores.

``indexer.search.choose`` chooses each outer fold's block weights on the other folds; here each
fold's queries are then searched with the space fitted without them (profile statistics and the
learned projection from the other folds' rated nodules, fold f's model's features), and the
pooled queries are scored like the network and the baselines, twice:

- *recorded sizes*: query and catalogue vectors both take the recorded diameter (a catalogue
  nodule's recorded diameter counts as the radiologist's measurement);
- *estimated sizes*: each query's vector takes the diameter the service estimates from its
  image (the fold model's mask, ``model.clinical.nodule_mask.find_nodule``), as a click without axes
  would; the catalogue keeps its recorded sizes. A query with no estimate is searched by its
  features alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from indexer.evaluate.alike import RatedRows
from indexer.evaluate.baselines import BASELINES
from indexer.evaluate.loading import CatalogNodules, CutRows, EvaluateOptions, NeighborSearch
from indexer.evaluate.protocol import Searched, evaluate_features, paired_difference
from indexer.evaluate.scores import Neighbors, loo_neighbors, loo_neighbors_of_queries
from indexer.search.choose import (
    Candidate,
    NestedChoice,
    SelectionData,
    candidate_grid,
    choose_nested,
    fitted_space,
)
from indexer.search.data import RatedCut, RatedSet, profiles_at
from model.clinical.descriptors import DESCRIPTOR_NAMES
from model.nn.embedder import Embedder

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
#: How many candidates the report lists, best plain-CV first.
SHOWN_CANDIDATES = 12


def selection_data(
    rated: RatedSet,
    cut: RatedCut,
    features: Sequence[F32],
    fold_of_row: I64,
    label_binary: F64,
    label_4class: F64,
) -> SelectionData:
    """What the choice needs; labels are the queries' (``rated.labelled`` order)."""
    return SelectionData(
        features=features,
        profiles=cut.profiles,
        targets=rated.targets,
        fold=fold_of_row,
        queries=rated.labelled,
        label_binary=label_binary,
        label_4class=label_4class,
        patients=[rated.patient_id[i] for i in rated.labelled],
    )


@dataclass(frozen=True)
class FoldVectorsOfSpace:
    """Each outer fold's vectors of every query: catalogue (recorded) and query (estimated)."""

    recorded: list[F32]
    estimated: list[F32]


def fold_vectors(
    data: SelectionData, choice: NestedChoice, estimated_profiles: F64
) -> FoldVectorsOfSpace:
    """Vectors of all queries under each outer fold's chosen space (fitted without the fold).

    ``estimated_profiles``: (Q, P) the queries' profiles at their estimated sizes.
    """
    recorded, estimated = [], []
    q = data.queries
    for f, candidate in enumerate(choice.chosen):
        space = fitted_space(data, f, data.fold != f, candidate)
        features = data.features[f][q]
        recorded.append(space.compose(features, data.profiles[q]))
        estimated.append(space.compose(features, estimated_profiles))
    return FoldVectorsOfSpace(recorded, estimated)


def fold_search(
    queries_by_fold: Sequence[F32], catalogue_by_fold: Sequence[F32], fold: I64
) -> NeighborSearch:
    """Each query's neighbours by its own fold's vectors (query and catalogue may differ)."""

    def search(patients: Sequence[str | None] | None, k: int) -> Neighbors:
        index = np.full((len(fold), k), -1, dtype=np.int64)
        similarity = np.full((len(fold), k), -np.inf)
        for f, (queries, catalogue) in enumerate(
            zip(queries_by_fold, catalogue_by_fold, strict=True)
        ):
            rows = fold == f
            if queries is catalogue:
                found = loo_neighbors(catalogue, k, patients)
            else:
                found = loo_neighbors_of_queries(queries, catalogue, k, patients)
            index[rows], similarity[rows] = found.index[rows], found.similarity[rows]
        return Neighbors(index, similarity)

    return search


#: Candidates always listed: the paper's features alone, the measured blocks alone, all blocks.
ANCHORS = (
    Candidate((1.0, 0.0, 0.0, 0.0, 0.0)),
    Candidate((0.0, 1.0, 1.0, 1.0, 0.0)),
    Candidate((1.0, 1.0, 1.0, 1.0, 1.0), 100.0),
)


def choice_summary(choice: NestedChoice) -> dict[str, Any]:
    """Each fold's choice, the final (all-fold) choice and the best candidates' numbers."""
    n = choice.n_queries
    order = np.argsort(-choice.plain_hits.sum(axis=1), kind="stable")[:SHOWN_CANDIDATES].tolist()
    order += [choice.candidates.index(a) for a in ANCHORS if a in choice.candidates]
    order = list(dict.fromkeys(order))
    inner_total = choice.inner_hits.sum(axis=0)
    inner_queries = n * (len(choice.chosen) - 1)
    return {
        "protocol": "nested patient-grouped CV: for each outer fold the other folds choose the "
        "block weights (binary + 4-class top-1 hits, each fold searched by its own model and "
        "a space fitted on neither fold); the outer fold only reports",
        "n_candidates": len(choice.candidates),
        "chosen_per_fold": [c.name for c in choice.chosen],
        "final": choice.final.name,
        "final_weights": choice.final.as_dict(),
        "final_alpha": choice.final.alpha,
        "candidates": [
            {
                "name": choice.candidates[i].name,
                "plain_cv_binary_r1": float(choice.plain_hits[i, 0] / n),
                "plain_cv_four_class_r1": float(choice.plain_hits[i, 1] / n),
                "inner_binary_r1": float(inner_total[i, 0] / inner_queries),
                "inner_four_class_r1": float(inner_total[i, 1] / inner_queries),
            }
            for i in order
        ],
    }


@dataclass(frozen=True)
class SearchInputs:
    """What the fold pass gathered for the search blocks."""

    rated: RatedSet
    rated_cut: RatedCut
    features: list[F32]
    """Each fold model's features of every rated nodule."""
    folds: list[tuple[str, ...]]
    cut: CutRows
    """The labelled nodules' cut, with the descriptors of the masks their fold models found."""
    first: Embedder

    def fold_of_row(self) -> I64:
        """Each rated nodule's fold; -1 where its subset is in no fold (it trains every fold)."""
        where = {s: f for f, members in enumerate(self.folds) for s in members}
        return np.array([where.get(s, -1) for s in self.rated.subset], dtype=np.int64)

    def estimated_diameters_mm(self) -> F64:
        """Each query's diameter as the service estimates it (NaN where no mask was found)."""
        return np.asarray(
            self.cut.descriptors[:, DESCRIPTOR_NAMES.index("mean_diameter_mm")], dtype=np.float64
        )


def search_report(
    inputs: SearchInputs,
    nodules: CatalogNodules,
    fold: I64,
    network: Searched,
    baselines: dict[str, Searched],
    options: EvaluateOptions,
    rated_rows: RatedRows,
) -> dict[str, Any]:
    """The nested choice and the chosen vectors' pooled scores, paired with the others.

    Scored with recorded and with estimated query sizes; paired with the network and every
    baseline.
    """
    data = selection_data(
        inputs.rated,
        inputs.rated_cut,
        inputs.features,
        inputs.fold_of_row(),
        nodules.label_binary,
        nodules.label_4class,
    )
    choice = choose_nested(data, candidate_grid())
    estimated = inputs.estimated_diameters_mm()
    spec = inputs.first.card.preprocessing
    rated, queries = inputs.rated, inputs.rated.labelled.tolist()
    profiles = profiles_at(
        [rated.source_path[rated.series_uid[i]] for i in queries],
        [rated.center_xyz[i] for i in queries],
        estimated.tolist(),
        spec,
    )
    vectors = fold_vectors(data, choice, profiles)
    rows = np.arange(len(nodules.ids), dtype=np.int64)
    recorded, found = evaluate_features(
        fold_search(vectors.recorded, vectors.recorded, fold), nodules, rows, options, rated_rows
    )
    by_estimate, found_estimated = evaluate_features(
        fold_search(vectors.estimated, vectors.recorded, fold), nodules, rows, options, rated_rows
    )
    against = {"network": network, **{name: baselines[name] for name in BASELINES}}
    paired = {
        name: paired_difference(found, other, nodules, rows, rated_rows, options)
        for name, other in against.items()
    }
    paired_estimated = {
        name: paired_difference(found_estimated, against[name], nodules, rows, rated_rows, options)
        for name in ("network", "diameter_density")
    }
    return {
        "choice": choice_summary(choice),
        "recorded_sizes": recorded.model_dump(),
        "estimated_sizes": by_estimate.model_dump(),
        "n_estimated": int(np.isfinite(profiles).all(axis=1).sum()),
        "paired": _dump(paired),
        "paired_estimated": _dump(paired_estimated),
    }


def _dump(paired: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: {m: d.model_dump() for m, d in by.items()} for name, by in paired.items()}
