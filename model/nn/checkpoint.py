"""Saving and loading a network: a state dict (``weights_only``, strict keys) plus its card."""

from __future__ import annotations

import hashlib
import io
import logging
from datetime import UTC, datetime
from pathlib import Path

import torch

from model.nn.card import (
    WEIGHTS_FILE,
    CardError,
    ModelCard,
    TrainingRecord,
    compute_fingerprint,
    read_card,
    write_card,
)
from model.nn.network import NoduleNet
from model.preprocessing import PatchSpec

logger = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is refused with a message."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    return torch.device(device)


def _clean_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # DataParallel / DDP checkpoints prefix every key with "module.".
    return {k.removeprefix("module."): v for k, v in state.items()}


def save_model(
    model_dir: Path,
    network: NoduleNet,
    preprocessing: PatchSpec,
    *,
    code_version: str,
    training: TrainingRecord | None = None,
) -> ModelCard:
    """Write ``weights.pt`` then ``card.json`` (both atomically); returns the card."""
    model_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    torch.save(state, buffer)
    data = buffer.getvalue()
    tmp = model_dir / f".{WEIGHTS_FILE}.tmp"
    tmp.write_bytes(data)
    tmp.replace(model_dir / WEIGHTS_FILE)
    weights_sha256 = hashlib.sha256(data).hexdigest()
    card = ModelCard(
        arch=network.config,
        preprocessing=preprocessing,
        embedding_dim=network.config.embedding_dim,
        weights_sha256=weights_sha256,
        fingerprint=compute_fingerprint(weights_sha256, preprocessing, network.config),
        code_version=code_version,
        created_at=datetime.now(UTC),
        training=training,
    )
    write_card(model_dir, card)
    return card


def load_model(model_dir: Path, device: str = "cpu") -> tuple[NoduleNet, ModelCard]:
    """Load card and weights, verify they belong together, return the network in eval mode.

    Raises:
        CardError: missing files, weights that are not the card's (hash), a card edited after
            training (fingerprint), or weights that do not fit the card's architecture.
    """
    card = read_card(model_dir)
    path = model_dir / card.weights_file
    try:
        data = path.read_bytes()
    except OSError:
        raise CardError(f"{path}: weights not found beside card.json") from None
    if hashlib.sha256(data).hexdigest() != card.weights_sha256:
        raise CardError(f"{path}: these weights are not the ones card.json describes (sha256)")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError) as e:
        raise CardError(f"{path}: not a loadable state dict ({type(e).__name__})") from None
    if not isinstance(state, dict):
        raise CardError(f"{path}: not a state dict")
    network = NoduleNet(card.arch)
    try:
        network.load_state_dict(_clean_state_dict(state), strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()
        raise CardError(
            f"{path}: weights do not fit the card's architecture {card.arch.model_dump()}: "
            + " ".join(first[:3])[:500]
        ) from None
    network.to(resolve_device(device)).eval()
    return network, card
