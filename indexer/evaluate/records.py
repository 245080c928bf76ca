"""The evaluation's records: what ``report.json`` holds, typed.

``report.json`` is ``EvaluationReport.model_dump()`` written as JSON (NaN stays NaN: a metric a
set cannot give, such as an AUC without both classes, is not a number). Recall keys are label
kinds (``binary``, ``four_class``) then k as a string (JSON keys), as the paper's Table 1.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

from indexer.evaluate.mask_quality import MaskQuality

_RULE_KEYS = ("same_patient_included", "same_patient_excluded")


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RecallCount(_Record):
    """Queries whose nearest k neighbours hold one of their class, of all that were asked."""

    hits: int
    queries: int


class LooksAlike(_Record):
    """Do the neighbours look alike beyond the label (``indexer.evaluate.alike``)?

    Rating keys are the LIDC characteristic names and ``mean`` (over the 8); values are mean
    ``|query - neighbour|`` rating differences (LIDC scale units, lower is better), NaN without
    rated queries.
    """

    k: int
    """How many neighbours ``rating_difference_top_k`` averages."""
    n_rated_queries: int
    rating_difference_top1: dict[str, float]
    rating_difference_top_k: dict[str, float]
    ndcg_at_k: dict[str, float]
    """nDCG with per-reader rating relevance, keyed by k as a string."""
    diameter_tertiles_mm: tuple[float, float]
    """The cut-points of the queries' diameters: small < first <= medium < second <= large."""
    recall_at_1_by_diameter_tertile: dict[str, dict[str, RecallCount]]
    """Tertile (small, medium, large) -> label kind (binary, four_class) -> hits at 1."""


class RetrievalSection(_Record):
    """Leave-one-out retrieval with one set of features, under one same-patient rule."""

    recall_at_k: dict[str, dict[str, float]]
    recall_counts: dict[str, dict[str, RecallCount]]
    vote_k: int
    vote_accuracy: float
    vote_accuracy_ci95: tuple[float, float]
    auc: float
    """AUC of the similarity-weighted malignancy vote (binary labels)."""
    auc_ci95: tuple[float, float]
    n_without_vote: int
    looks_alike: LooksAlike | None = None
    """None in reports written before these metrics existed."""


class FeatureResult(RetrievalSection):
    """The headline rule's section, with the other rule's nested under its name."""

    same_patient_included: RetrievalSection | None = None
    same_patient_excluded: RetrievalSection | None = None

    @model_serializer(mode="wrap")
    def _only_the_other_rule(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # One of the two is the headline itself: only the other is written.
        data: dict[str, Any] = handler(self)
        for key in _RULE_KEYS:
            if data.get(key, ...) is None:
                del data[key]
        return data


class PairedDifference(_Record):
    """Network minus baseline on the same queries, with a paired patient-bootstrap 95% interval."""

    difference: float
    ci95: tuple[float, float]
    beats: bool
    """The interval lies on the network's better side of zero (below it for rating
    differences, where lower is better; above it otherwise)."""


class FpReduction(_Record):
    """The detector's own held-out numbers, from the model card."""

    val_auc: float | None
    froc: dict[str, Any] | None
    source: str


class EvaluationReport(FeatureResult):
    """``report.json``: the network's retrieval (flattened here), the baselines, the facts."""

    index_version: str
    model_fingerprint: str
    created_at: str
    code_version: str
    machine: dict[str, str]
    protocol: str
    exclude_same_patient: bool
    label_rule: dict[str, Any] | str
    n_nodules: int
    n_queries: int
    n_patients: int
    class_counts: dict[str, dict[str, int]]
    baselines: dict[str, FeatureResult]
    paired_vs_baselines: dict[str, dict[str, PairedDifference]]
    network_beats_baselines_binary_recall_at_1: dict[str, bool]
    mask_quality: MaskQuality | None = None
    """The service's masks against the set's reference masks, beside region growing (None: the
    model has no mask branch, or the set no reference masks)."""
    search_blocks: dict[str, float] | None = None
    """The stored vector's blocks and their shares (None: the network's features alone)."""
    paper: dict[str, dict[str, float]]
    fp_reduction: FpReduction
    stored_vectors_max_abs_diff: float
    map: dict[str, str]
    files: list[str]
    data_fingerprint: str | None
    elapsed_s: float
