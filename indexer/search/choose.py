"""Choose the search vector's block weights by nested patient-grouped cross-validation.

The candidates are every weighting of the five blocks on a small grid (each 0, 1 or 2, not all
0) and, where the learned block has a weight, the ridge strength of its projection. For outer
fold f the *inner* folds choose: every other fold g is searched with fold g's model, and with a
search space (profile statistics, projection) fitted on the rated nodules of neither f nor g;
the candidate with the most binary plus 4-class top-1 hits over those queries (neighbours of
the query's own patient and fold f's nodules excluded) is applied to fold f, whose score the
outer report shows. So fold f's labels and ratings never took part in the choice made for it.

The network models are the cross-validation's fold models: fold g's model trained without
fold g, so it may have seen fold f's images as nodules (never their ratings or labels).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from indexer.search.fit import fit_space
from model.nn.search_space import BLOCK_ORDER, BlockName, SearchSpace

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

WEIGHT_LEVELS = (0.0, 1.0, 2.0)
ALPHAS = (10.0, 100.0, 1000.0)
#: The ridge strength of spaces without the learned block (unused there; one value).
NO_ALPHA = 100.0


@dataclass(frozen=True)
class Candidate:
    """One weighting of the blocks (``BLOCK_ORDER``) and the projection's ridge strength."""

    weights: tuple[float, ...]
    alpha: float = NO_ALPHA

    def as_dict(self) -> dict[BlockName, float]:
        """Block name to weight, the zero weights left out."""
        return {b: w for b, w in zip(BLOCK_ORDER, self.weights, strict=True) if w > 0}

    @property
    def name(self) -> str:
        """E.g. ``features 1, size 2, learned 1 (alpha 100)``."""
        shown = ", ".join(f"{b} {w:g}" for b, w in self.as_dict().items())
        return shown + (f" (alpha {self.alpha:g})" if self.as_dict().get("learned") else "")


def candidate_grid(
    levels: Sequence[float] = WEIGHT_LEVELS, alphas: Sequence[float] = ALPHAS
) -> list[Candidate]:
    """Every weighting on the grid (not all zero); learned ones once per ridge strength."""
    out = []
    for weights in itertools.product(levels, repeat=len(BLOCK_ORDER)):
        if not any(weights):
            continue
        learned = weights[BLOCK_ORDER.index("learned")] > 0
        out += [Candidate(tuple(weights), a) for a in (alphas if learned else (NO_ALPHA,))]
    return out


@dataclass(frozen=True)
class SelectionData:
    """What the choice needs, over every rated nodule of the set (N rows).

    Attributes:
        features: per fold model, (N, F) unit features of every row.
        profiles: (N, P) profiles at the recorded diameters (NaN rows where none).
        targets: (N, 9) readers' mean ratings (NaN rows where unrated).
        fold: (N,) fold of each row; -1 for rows in no fold (they train every fold).
        queries: indices of the labelled rows (the evaluation's queries and catalogue).
        label_binary, label_4class: the queries' labels.
        patients: the queries' patients.
    """

    features: Sequence[F32]
    profiles: F64
    targets: F64
    fold: I64
    queries: I64
    label_binary: F64
    label_4class: F64
    patients: Sequence[str | None]

    @property
    def n_folds(self) -> int:
        """How many fold models there are."""
        return len(self.features)


def fitted_space(
    data: SelectionData, model_fold: int, train: npt.NDArray[np.bool_], candidate: Candidate
) -> SearchSpace:
    """The candidate's space fitted on rows ``train`` with fold ``model_fold``'s features."""
    return fit_space(
        candidate.as_dict(),
        data.features[model_fold][train],
        data.profiles[train],
        data.targets[train],
        alpha=candidate.alpha,
        trained_on=f"{int(train.sum())} rated nodules outside the queried fold",
    )


def block_similarities(
    data: SelectionData, model_fold: int, train: npt.NDArray[np.bool_], alphas: Sequence[float]
) -> dict[tuple[BlockName, float], F64]:
    """Each block's cosine similarity among the queries, (Q, Q), keyed by (block, alpha).

    The learned block once per ridge strength; the others (keyed ``NO_ALPHA``) once.
    """
    out: dict[tuple[BlockName, float], F64] = {}
    q = data.queries
    for i, alpha in enumerate(alphas):
        space = fitted_space(data, model_fold, train, Candidate((1.0,) * len(BLOCK_ORDER), alpha))
        vectors = space.compose(data.features[model_fold][q], data.profiles[q]).astype(np.float64)
        for part in space.parts(data.features[model_fold].shape[1]):
            if part.name != "learned" and i > 0:
                continue  # the same for every alpha
            block = vectors[:, part.start : part.stop]
            norms = np.linalg.norm(block, axis=1, keepdims=True)
            unit = block / np.where(norms > 0, norms, 1.0)
            key_alpha = alpha if part.name == "learned" else NO_ALPHA
            out[(part.name, key_alpha)] = unit @ unit.T  # type: ignore[index]
    return out


def combined(sims: dict[tuple[BlockName, float], F64], candidate: Candidate) -> F64:
    """The candidate's similarity: its weighted sum of the blocks' similarities."""
    total: F64 | None = None
    for block, weight in candidate.as_dict().items():
        key = (block, candidate.alpha if block == "learned" else NO_ALPHA)
        term = weight * sims[key]
        total = term if total is None else total + term
    assert total is not None
    return total


def top1_hits(
    data: SelectionData,
    sims: F64,
    rows: npt.NDArray[np.bool_],
    hidden: npt.NDArray[np.bool_] | None = None,
) -> tuple[int, int]:
    """Binary and 4-class top-1 hits of the query rows ``rows`` (other patients' neighbours).

    ``hidden``: queries left out of the catalogue too (the outer fold, in an inner search).
    """
    s = np.array(sims, dtype=np.float64)
    if hidden is not None:
        s[:, hidden] = -np.inf
    # A nodule never finds itself; an unknown patient (None) matches no one.
    patients = np.array([p if p is not None else f"\0{i}" for i, p in enumerate(data.patients)])
    s[patients[:, None] == patients[None, :]] = -np.inf
    np.fill_diagonal(s, -np.inf)
    nearest = np.argmax(s, axis=1)
    binary = data.label_binary[nearest] == data.label_binary
    four = data.label_4class[nearest] == data.label_4class
    return int(binary[rows].sum()), int(four[rows].sum())


@dataclass(frozen=True)
class NestedChoice:
    """Each outer fold's chosen candidate and the inner scores behind it."""

    candidates: list[Candidate]
    chosen: list[Candidate]
    inner_hits: F64
    """(folds, candidates, 2): binary and 4-class top-1 hits of each outer fold's inner queries."""
    plain_hits: F64
    """(candidates, 2): hits of plain (not nested) CV, every fold searched by its own model."""
    n_queries: int

    @property
    def final(self) -> Candidate:
        """The candidate with the most plain-CV hits over all folds: what a final model gets."""
        return self.candidates[int(np.argmax(self.plain_hits.sum(axis=1)))]


def _score_all(
    data: SelectionData,
    candidates: Sequence[Candidate],
    score_folds: Sequence[int],
    sims_of: dict[int, dict[tuple[BlockName, float], F64]],
    hidden_fold: int | None = None,
) -> F64:
    qfold = data.fold[data.queries]
    hidden = None if hidden_fold is None else qfold == hidden_fold
    hits = np.zeros((len(candidates), 2))
    for i, c in enumerate(candidates):
        for g in score_folds:
            hits[i] += top1_hits(data, combined(sims_of[g], c), qfold == g, hidden)
    return hits


def choose_nested(data: SelectionData, candidates: Sequence[Candidate]) -> NestedChoice:
    """Nested choice (module docstring) and every candidate's plain CV hits."""
    alphas = sorted({c.alpha for c in candidates} | {NO_ALPHA})
    folds = range(data.n_folds)
    outer_sims = {g: block_similarities(data, g, data.fold != g, alphas) for g in folds}
    plain = _score_all(data, candidates, list(folds), outer_sims)
    inner = np.zeros((data.n_folds, len(candidates), 2))
    chosen = []
    for f in folds:
        others = [g for g in folds if g != f]
        sims = {
            g: block_similarities(data, g, (data.fold != f) & (data.fold != g), alphas)
            for g in others
        }
        # The outer fold is out of the inner catalogue too: its labels take no part.
        inner[f] = _score_all(data, candidates, others, sims, hidden_fold=f)
        # Ties go to the earlier candidate in the grid (fewer, lighter blocks come first).
        chosen.append(candidates[int(np.argmax(inner[f].sum(axis=1)))])
    return NestedChoice(list(candidates), chosen, inner, plain, len(data.queries))
