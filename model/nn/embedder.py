"""Batched embedding: the one place where the service and the indexer turn patches into vectors.

On CPU, small batches run the encoder through oneDNN (``torch.utils.mkldnn``), about 8x faster
than torch's default CPU path for a single 3-D patch on 2 threads; larger batches run in the
channels-last 3-D memory format, about 1.5x faster than the default. Both give the same numbers
as ``NoduleNet.embed`` (within 1e-6). On CUDA the network runs in channels-last under bfloat16
autocast when ``amp`` is on.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.utils import mkldnn

from model.nn.card import ModelCard
from model.nn.checkpoint import load_model, resolve_device
from model.nn.network import NoduleNet, pool_embedding, search_vector
from model.nn.profile import PROFILE_NAMES

logger = logging.getLogger(__name__)

F32Array = npt.NDArray[np.float32]

#: Below this batch size the oneDNN path is fastest on CPU, from it on channels-last is
#: (bench/results/embed_throughput.json).
MKLDNN_MAX_BATCH = 8
#: Which of the three spatial axes each of the 8 test-time flips reverses.
_BITS = [(z, y, x) for z in (False, True) for y in (False, True) for x in (False, True)]


class EmbeddingInputError(ValueError):
    """Patches with the wrong shape or non-finite values."""


def _fold_batch_norms(encoder: nn.ModuleList) -> nn.ModuleList:
    """Each (Conv3d, BatchNorm3d) pair of the encoder's blocks as one conv (eval statistics)."""
    blocks = []
    for block in encoder:
        layers = list(block.children())
        out: list[nn.Module] = []
        i = 0
        while i < len(layers):
            conv, norm = layers[i], layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(conv, nn.Conv3d) and isinstance(norm, nn.BatchNorm3d):
                out.append(fuse_conv_bn_eval(conv, norm))
                i += 2
            else:
                out.append(conv)
                i += 1
        blocks.append(nn.Sequential(*out))
    return nn.ModuleList(blocks)


class Embedder:
    """Owns a network in eval mode, its card and its device; turns patches into unit vectors.

    Args:
        network: the trained network (any device; moved to ``device``).
        card: its model card (patch shape and embedding size come from here).
        device: ``auto``, ``cpu`` or ``cuda``.
        batch_size: patches per forward pass.
        amp: bfloat16 autocast on CUDA.
    """

    def __init__(
        self,
        network: NoduleNet,
        card: ModelCard,
        device: str = "auto",
        *,
        batch_size: int = 64,
        amp: bool = True,
    ) -> None:
        self.card = card
        self.device = resolve_device(device)
        self.batch_size = max(1, batch_size)
        self.amp = amp and self.device.type == "cuda"
        # torch's typing of Module.to lacks memory_format, which it accepts.
        network.to(self.device, memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
        self.network = network.eval()
        self._mkldnn_encoder: nn.ModuleList | None = None
        if self.device.type == "cpu" and torch.backends.mkldnn.is_available():  # type: ignore[no-untyped-call]
            # A converted copy (the original keeps dense weights for other uses), with each batch
            # norm folded into the convolution before it: the same numbers, ~1 ms less a patch.
            fused = _fold_batch_norms(copy.deepcopy(self.network.encoder))
            self._mkldnn_encoder = mkldnn.to_mkldnn(fused)  # type: ignore[no-untyped-call]

    @classmethod
    def from_model_dir(cls, model_dir: Path, device: str = "auto", **kwargs: object) -> Embedder:
        """Load card and weights (verified) and build an embedder."""
        network, card = load_model(model_dir, "cpu")
        return cls(network, card, device, **kwargs)  # type: ignore[arg-type]

    @property
    def embedding_dim(self) -> int:
        """Length of every stored vector (``vectors``)."""
        return self.card.embedding_dim

    @property
    def feature_dim(self) -> int:
        """Length of the network's feature vector (``embed_patches``)."""
        return self.card.arch.embedding_dim

    @property
    def uses_profile(self) -> bool:
        """Whether the vector has measured or learned blocks (it then needs a size)."""
        search = self.card.search
        return search is not None and search.blocks != ("features",)

    def vectors(self, patches: npt.ArrayLike, profiles: npt.ArrayLike | None = None) -> F32Array:
        """The stored (searched) vectors of patches.

        The features, composed with the profiles' blocks when the card has a search space
        (``model.nn.search_space``).

        Args:
            patches: as for ``embed_patches``.
            profiles: (N, len(PROFILE_NAMES)) ``model.nn.profile`` values, a NaN row for a nodule
                of unknown size; needed when ``uses_profile``.

        Raises:
            EmbeddingInputError: the patches are malformed, or profiles are missing or do not
                match them.
        """
        return self.compose(self.embed_patches(patches), profiles)

    def compose(self, features: F32Array, profiles: npt.ArrayLike | None = None) -> F32Array:
        """The stored vectors of features already embedded (``embed_patches``) and profiles.

        Raises:
            EmbeddingInputError: profiles are missing or do not match the features.
        """
        search = self.card.search
        if search is None:
            return features
        if profiles is None:
            if self.uses_profile:
                raise EmbeddingInputError("this model's vectors need each nodule's profile")
            profiles = np.full((len(features), len(PROFILE_NAMES)), np.nan)
        rows = np.asarray(profiles, dtype=np.float64)
        if rows.shape != (len(features), len(PROFILE_NAMES)):
            raise EmbeddingInputError(
                f"profiles must have shape ({len(features)}, {len(PROFILE_NAMES)}), "
                f"got {rows.shape}"
            )
        return search.compose(features, rows)

    def _embed_batch(self, x: Tensor) -> Tensor:
        if self._mkldnn_encoder is not None and len(x) < MKLDNN_MAX_BATCH:
            config = self.network.config
            y = x.to_mkldnn()
            maps = []
            for i, block in enumerate(self._mkldnn_encoder):
                y = block(y if i == 0 else F.max_pool3d(y, 2))
                # Only the maps the pooling reads are turned back into dense tensors.
                if config.embedding_pool != "avg" or i == len(self._mkldnn_encoder) - 1:
                    maps.append(y.to_dense())
            return search_vector(pool_embedding(maps, config), x, config)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            return self.network.embed(x.contiguous(memory_format=torch.channels_last_3d))

    @property
    def segments(self) -> bool:
        """Whether the model has the mask branch (``mask_probabilities``)."""
        return self.network.config.segmentation

    def _checked(self, patches: npt.ArrayLike) -> F32Array:
        """(N, D, H, W) float32 patches of the card's shape, finite.

        Raises:
            EmbeddingInputError: another shape, or NaN / infinite values.
        """
        array = np.asarray(patches, dtype=np.float32)
        expected = tuple(self.card.preprocessing.patch_shape_zyx)
        if array.ndim == 5 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 4 or tuple(array.shape[1:]) != expected:
            raise EmbeddingInputError(
                f"patches must have shape (N, {', '.join(map(str, expected))}), got {array.shape}"
            )
        if not np.all(np.isfinite(array)):
            raise EmbeddingInputError("patches contain NaN or infinite values")
        return array

    def mask_probabilities(self, patches: npt.ArrayLike) -> F32Array:
        """The mask branch's nodule probability of every patch voxel, mean over the 8 flips.

        Test-time augmentation: each patch is segmented as it is and flipped along every subset
        of its three axes; the flipped answers are flipped back and averaged (the recipe
        ``bench/bench_mask_head.py`` validated). Runs in float32 on every device.

        Args:
            patches: (N, D, H, W) or (N, 1, D, H, W), as for ``embed_patches``.

        Returns:
            (N, D, H, W) float32 in [0, 1].

        Raises:
            EmbeddingInputError: the model has no mask branch, or the patches are malformed.
        """
        if not self.segments:
            raise EmbeddingInputError("this model has no mask branch (trained without one)")
        array = self._checked(patches)
        flips = [tuple(a for a, on in zip((2, 3, 4), bits, strict=True) if on) for bits in _BITS]
        out = np.empty(array.shape, dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(array), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(array[start : start + self.batch_size]))
                x = x[:, None].to(self.device)
                # All flips of the chunk in one batch: one pass instead of eight.
                batch = torch.cat([x.flip(f) if f else x for f in flips])
                logits = self.network.segment(
                    batch.contiguous(memory_format=torch.channels_last_3d)
                ).float()
                views = torch.sigmoid(logits).reshape(len(flips), *x.shape)
                mean = torch.stack(
                    [v.flip(f) if f else v for v, f in zip(views, flips, strict=True)]
                ).mean(dim=0)
                out[start : start + len(x)] = mean[:, 0].cpu().numpy()
        return out

    def embed_patches(self, patches: npt.ArrayLike) -> F32Array:
        """Embed patches from ``model.preprocessing.extract_patch``.

        Args:
            patches: (N, D, H, W) or (N, 1, D, H, W) float32, D, H, W as the card's patch shape.

        Returns:
            (N, feature_dim) float32, each row of unit L2 norm: the network's features (the
            stored vector itself for a card without a search space; see ``vectors``).
        """
        array = self._checked(patches)
        out = np.empty((len(array), self.feature_dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(array), self.batch_size):
                chunk = torch.from_numpy(
                    np.ascontiguousarray(array[start : start + self.batch_size])
                )
                x = chunk[:, None].to(self.device, non_blocking=True)
                out[start : start + len(chunk)] = self._embed_batch(x).float().cpu().numpy()
        return out
