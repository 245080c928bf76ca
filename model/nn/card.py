"""The model card: what is stored beside the weights so every user of a model agrees with it.

``MODEL_DIR/card.json`` holds the architecture and its parameters, the preprocessing spec of the
one patch function, the embedding size, the training record (data fingerprint, seed, metrics,
FROC) and the code version; ``MODEL_DIR/weights.pt`` holds the state dict. The card's
``fingerprint`` hashes (weights, preprocessing, architecture): the index records it, and a card
whose preprocessing was changed after training no longer matches it. A card with a search
space (``model.nn.search_space``: which blocks make the stored vector, their weights, the profile
statistics and the learned projection) hashes it too, since it changes every vector.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from model.nn.network import EmbeddingPart, NetworkConfig, embedding_parts
from model.nn.profile import PROFILE_NAMES
from model.nn.search_space import SearchSpace
from model.preprocessing import PatchSpec

CARD_FILE = "card.json"
WEIGHTS_FILE = "weights.pt"
CARD_FORMAT = 1


class CardError(ValueError):
    """A model card is missing, invalid, or does not match its weights."""


class FrocResult(BaseModel):
    """LUNA16 FROC: sensitivity at fixed false positives per scan, and their mean (CPM)."""

    model_config = ConfigDict(frozen=True)

    fp_per_scan: tuple[float, ...]
    sensitivity: tuple[float, ...]
    cpm: float
    n_scans: int
    n_nodules: int


class DataRecord(BaseModel):
    """The data card: what a model was trained and validated on.

    Patient ids are not listed (a hospital's set would carry identifiers); ``patients_sha256``
    hashes the sorted training patients so two cards can be compared.
    """

    model_config = ConfigDict(frozen=True)

    source: str
    """``realset.json``, ``synth.json`` or ``crops.json`` where the folder has one, else
    ``luna16`` (a plain LUNA16 download)."""
    source_sha256: str | None
    train_patients: int
    val_patients: int
    train_positives: int
    train_negatives: int
    val_positives: int
    val_negatives: int
    patients_sha256: str
    summary: dict[str, Any] = Field(default_factory=dict)
    """The source file's counts and checksums (its ``counts``, ``scans`` and ``source``)."""


class TrainingRecord(BaseModel):
    """How the weights were made and how well they separate nodules from candidates."""

    model_config = ConfigDict(frozen=True)

    data_fingerprint: str
    seed: int
    epochs: int
    best_epoch: int
    device: str
    train_time_s: float
    train_subsets: tuple[str, ...]
    val_subsets: tuple[str, ...]
    n_train_samples: int
    n_val_samples: int
    metrics: dict[str, float] = Field(default_factory=dict)
    froc: FrocResult | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    history: tuple[dict[str, float], ...] = ()
    """Per-epoch metrics of the whole run."""
    data: DataRecord | None = None


class MaskPolicy(BaseModel):
    """Where region growing's mask replaces the mask branch's (``model.clinical.nodule_mask``).

    Chosen by patient-grouped cross-validation of the model's training recipe (``nodule-index
    crossval --set-mask-policy``): the diameter ranges in which region growing's masks agreed
    better with the reference masks than the branch's, on the nodules region growing answers.
    It changes sizes, not vectors: it is not part of the fingerprint.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    region_growing_mm: tuple[tuple[float, float], ...] = ()
    """``[low, high)`` ranges of the branch's own mean diameter (mm); empty: the branch always."""
    chosen_by: str | None = None
    """Where the ranges came from (the cross-validation report and its numbers)."""

    def prefers_growing(self, branch_mean_diameter_mm: float) -> bool:
        """Whether a nodule the branch measures at this mean diameter is sized by growing."""
        return any(low <= branch_mean_diameter_mm < high for low, high in self.region_growing_mm)


def _unused_arch_fields(arch: NetworkConfig) -> set[str]:
    """Fields that do not change this architecture's vectors, left out of its fingerprint.

    They are absent from the cards written before they existed; leaving them out while they
    have no effect keeps those cards' fingerprints valid.
    """
    unused = set()
    if arch.embedding_pool == "avg":
        unused.add("embedding_center_fraction")
    if arch.size_profile_weight == 0:
        unused |= {"size_profile_weight", "size_profile_shells"}
    if not arch.segmentation:
        unused.add("segmentation")
    return unused


def compute_fingerprint(
    weights_sha256: str,
    preprocessing: PatchSpec,
    arch: NetworkConfig,
    search: SearchSpace | None = None,
) -> str:
    """sha256 over the weights hash and the canonical JSON of preprocessing and architecture.

    And of the search space where there is one (cards without one keep their fingerprints).
    """
    extra = {} if search is None else {"search": search.model_dump(mode="json")}
    payload = json.dumps(
        {
            **extra,
            "weights_sha256": weights_sha256,
            # ``outside`` came later; "air" is what every earlier card did, so leaving it out
            # then keeps their fingerprints valid.
            "preprocessing": preprocessing.model_dump(
                mode="json", exclude={"outside"} if preprocessing.outside == "air" else None
            ),
            "arch": arch.model_dump(mode="json", exclude=_unused_arch_fields(arch)),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class ModelCard(BaseModel):
    """``card.json``: everything needed to rebuild, feed and trust the network."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = CARD_FORMAT
    arch: NetworkConfig
    preprocessing: PatchSpec
    embedding_dim: int
    weights_file: str = WEIGHTS_FILE
    weights_sha256: str
    fingerprint: str
    code_version: str
    created_at: datetime
    training: TrainingRecord | None = None
    mask_policy: MaskPolicy = Field(default_factory=MaskPolicy)
    search: SearchSpace | None = None
    """The blocks of the stored vector; None: the network's features alone."""

    @model_validator(mode="after")
    def _consistent(self) -> ModelCard:
        if self.embedding_dim != self.vector_dim:
            raise ValueError(
                f"embedding_dim {self.embedding_dim} != the vector's {self.vector_dim}"
            )
        projection = self.search.projection if self.search is not None else None
        inputs = self.arch.embedding_dim + len(PROFILE_NAMES)
        if projection is not None and len(projection.input_scaler.mean) != inputs:
            raise ValueError(
                f"the learned projection takes {len(projection.input_scaler.mean)} inputs, "
                f"this network's features and profile are {inputs}"
            )
        step = 2**self.arch.levels
        if any(n % step for n in self.preprocessing.patch_shape_zyx):
            raise ValueError(
                f"patch shape {self.preprocessing.patch_shape_zyx} must be divisible by {step}"
            )
        return self

    @property
    def vector_dim(self) -> int:
        """The stored vector's length: the features', or the search space's blocks'."""
        features = self.arch.embedding_dim
        return features if self.search is None else self.search.dim(features)

    def expected_fingerprint(self) -> str:
        """The fingerprint the card's weights hash, preprocessing, architecture and search give."""
        return compute_fingerprint(self.weights_sha256, self.preprocessing, self.arch, self.search)

    def with_search(self, search: SearchSpace | None) -> ModelCard:
        """This card with another search space (its vector length and fingerprint follow)."""
        update: dict[str, Any] = {"search": search}
        update["embedding_dim"] = (
            self.arch.embedding_dim if search is None else search.dim(self.arch.embedding_dim)
        )
        update["fingerprint"] = compute_fingerprint(
            self.weights_sha256, self.preprocessing, self.arch, search
        )
        return ModelCard.model_validate({**self.model_dump(), **update})

    def summary(self) -> dict[str, Any]:
        """A short description for logs and the service's index endpoint."""
        froc = self.training.froc if self.training else None
        return {
            "arch": self.arch.name,
            "width": self.arch.width,
            "embedding_dim": self.embedding_dim,
            "patch_shape_zyx": list(self.preprocessing.patch_shape_zyx),
            "spacing_mm": self.preprocessing.spacing_mm,
            "hu_window": list(self.preprocessing.hu_window),
            "outside": self.preprocessing.outside,
            "fingerprint": self.fingerprint,
            "val_auc": self.training.metrics.get("val_auc") if self.training else None,
            "cpm": froc.cpm if froc else None,
            "code_version": self.code_version,
            "segmentation": self.arch.segmentation,
            # Which blocks make the vector and their weights (None: the features alone).
            "search_blocks": self.search.shares() if self.search is not None else None,
            # Where region growing sizes instead of the branch (empty: nowhere), and why.
            "mask_policy": self.mask_policy.model_dump(mode="json"),
        }


def vector_parts(card: ModelCard) -> list[EmbeddingPart]:
    """The named blocks of a card's stored vector ("why similar").

    The search space's blocks (features, size, density, shape, learned) when the card has one;
    else the network's own parts (encoder levels, the size profile).
    """
    if card.search is not None:
        return card.search.parts(card.arch.embedding_dim)
    return embedding_parts(card.arch)


def _card_json(model_dir: Path) -> tuple[Path, Any]:
    """The parsed ``card.json`` of a model folder and its path."""
    path = model_dir / CARD_FILE
    try:
        return path, json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CardError(f"no {CARD_FILE} in {model_dir}") from None
    except (OSError, json.JSONDecodeError) as e:
        raise CardError(f"{path}: cannot read model card ({e})") from None


def read_card(model_dir: Path) -> ModelCard:
    """Read and validate ``model_dir/card.json`` (not the weights)."""
    path, data = _card_json(model_dir)
    try:
        card = ModelCard.model_validate(data)
    except ValidationError as e:
        raise CardError(f"{path}: invalid model card: {e}") from None
    if card.fingerprint != card.expected_fingerprint():
        raise CardError(
            f"{path}: the card's preprocessing or architecture differs from what its weights were "
            "trained with (fingerprint mismatch); re-train or restore the original card"
        )
    return card


def write_card(model_dir: Path, card: ModelCard) -> None:
    """Write ``card.json`` atomically (temp file, then rename)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / f".{CARD_FILE}.tmp"
    tmp.write_text(card.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(model_dir / CARD_FILE)


def read_patch_spec(model_dir: Path) -> PatchSpec:
    """The preprocessing spec recorded in ``model_dir/card.json`` (key ``preprocessing``).

    Reads only that section, so it also works on a card whose weights are not at hand.
    """
    path, card = _card_json(model_dir)
    if not isinstance(card, dict) or "preprocessing" not in card:
        raise CardError(f"{path}: model card has no 'preprocessing' section")
    try:
        return PatchSpec.model_validate(card["preprocessing"])
    except ValidationError as e:
        raise CardError(f"{path}: invalid preprocessing spec: {e}") from None
