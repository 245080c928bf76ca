"""The evaluation's records: what ``report.json`` holds, typed.

``report.json`` is ``EvaluationReport.model_dump()`` written as JSON (NaN stays NaN: a metric a
set cannot give, such as an AUC without both classes, is not a number). Recall keys are label
kinds (``binary``, ``four_class``) then k as a string (JSON keys), as the paper's Table 1.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

_RULE_KEYS = ("same_patient_included", "same_patient_excluded")


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RecallCount(_Record):
    """Queries whose nearest k neighbours hold one of their class, of all that were asked."""

    hits: int
    queries: int


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
    """Network minus baseline on the same queries, with a paired bootstrap 95% interval."""

    difference: float
    ci95: tuple[float, float]
    beats: bool
    """The interval lies above zero."""


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
    paper: dict[str, dict[str, float]]
    fp_reduction: FpReduction
    stored_vectors_max_abs_diff: float
    map: dict[str, str]
    files: list[str]
    data_fingerprint: str | None
    elapsed_s: float
