"""The model card: what is stored beside the weights so every user of a model agrees with it.

For now this reads the preprocessing spec (the one patch function's parameters) out of
``MODEL_DIR/card.json``; the full card (architecture, fingerprints, metrics) builds on it.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from model.preprocessing import PatchSpec

CARD_FILE = "card.json"


class CardError(ValueError):
    """A model card is missing or invalid."""


def read_patch_spec(model_dir: Path) -> PatchSpec:
    """The preprocessing spec recorded in ``model_dir/card.json`` (key ``preprocessing``)."""
    path = model_dir / CARD_FILE
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CardError(f"no {CARD_FILE} in {model_dir}") from None
    except (OSError, json.JSONDecodeError) as e:
        raise CardError(f"{path}: cannot read model card ({e})") from None
    if not isinstance(card, dict) or "preprocessing" not in card:
        raise CardError(f"{path}: model card has no 'preprocessing' section")
    try:
        return PatchSpec.model_validate(card["preprocessing"])
    except ValidationError as e:
        raise CardError(f"{path}: invalid preprocessing spec: {e}") from None
