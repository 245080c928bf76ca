"""The false-positive-reduction network (encoder-decoder 3-D FCN); its bottleneck is the embedding.

After the seed paper's Figure 1 (Park et al.) and Dou et al. 2017: a 3-D encoder (conv blocks and
downsampling) to a bottleneck, a decoder that upsamples with skip connections, and a fully
convolutional head that scores every location of the decoder's map as nodule vs non-nodule; the
patch score is the mean of that map. The network is trained only for that task; its encoder's
feature maps are the embedding used for search.

Embedding (``embedding_pool``):

* ``center-multiscale`` (default): every encoder level's map averaged over the central part of
  the patch (``embedding_center_fraction`` of each side, 1/4 = a 10 mm cube at 32 voxels of
  1.25 mm), each level L2-normalised, concatenated, L2-normalised again. The nodule sits at the
  patch centre; averaging the whole map mixes in vessels, pleura and background, and the finest
  levels carry the density and margin that radiologists rate. Chosen on a second synthetic set
  (seed 1), not on the set the demo reports: binary Recall@1 0.90 there vs 0.59 for ``avg``.
* ``avg``: the bottleneck averaged over the whole map (the first design; older cards use it).

Segmentation (``segmentation=True``): an auxiliary branch gives the nodule's mask. One more
decoder step at full resolution (the decoder's finest map upsampled, concatenated with the level-0
encoder map, a conv block) and a 1x1x1 conv give one mask logit per input voxel. Without it the
network has exactly the modules, state dict keys and outputs it always had.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

ARCH_NAME: Literal["fpr-unet3d"] = "fpr-unet3d"
#: The mask head's initial bias: logit of the share of a patch a nodule fills (about 5 %).
SEGMENTATION_PRIOR_LOGIT = -3.0


class NetworkConfig(BaseModel):
    """Architecture parameters, stored in the model card.

    Attributes:
        width: channels of the first encoder block; each level doubles it.
        levels: number of downsampling steps (the bottleneck runs at 1 / 2**levels resolution).
        embedding_pool: how the encoder's maps become a vector (see the module docstring).
        embedding_center_fraction: with ``center-multiscale``, the share of each side pooled.
        segmentation: add the mask branch (``NoduleNet.segment``); left out of the fingerprint
            while False, so the cards written before it existed keep theirs.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Literal["fpr-unet3d"] = ARCH_NAME
    width: int = Field(default=16, ge=4, le=128)
    levels: int = Field(default=3, ge=1, le=5)
    embedding_pool: Literal["center-multiscale", "avg"] = "center-multiscale"
    embedding_center_fraction: float = Field(default=0.25, gt=0.0, le=1.0)
    size_profile_weight: float = Field(default=0.0, ge=0.0, lt=1.0)
    size_profile_shells: int = Field(default=16, ge=2, le=64)
    segmentation: bool = False

    @property
    def feature_dim(self) -> int:
        """Length of the pooled feature part: bottleneck channels, or all levels' channels."""
        if self.embedding_pool == "avg":
            return int(self.width * 2**self.levels)
        return int(sum(self.width * 2**i for i in range(self.levels + 1)))

    @property
    def embedding_dim(self) -> int:
        """Length of the search vector: the features, and the size profile when it is used."""
        extra = self.size_profile_shells if self.size_profile_weight > 0 else 0
        return self.feature_dim + extra


@dataclass(frozen=True)
class EmbeddingPart:
    """A block of the search vector: one encoder level's pooled features, or the size profile."""

    name: str
    start: int
    stop: int


def embedding_parts(config: NetworkConfig) -> list[EmbeddingPart]:
    """The blocks of the search vector, in order (``pool_embedding``, ``search_vector``).

    With ``center-multiscale`` each encoder level is one block (level 0 at full resolution, the
    last one the bottleneck); ``avg`` has the bottleneck alone. The size profile comes last.
    """
    if config.embedding_pool == "avg":
        parts = [EmbeddingPart("bottleneck", 0, config.feature_dim)]
    else:
        parts, start = [], 0
        for level in range(config.levels + 1):
            channels = config.width * 2**level
            scale = "full resolution" if level == 0 else f"1/{2**level} resolution"
            if level == config.levels:
                scale += ", bottleneck"
            parts.append(EmbeddingPart(f"level {level} ({scale})", start, start + channels))
            start += channels
    if config.size_profile_weight > 0:
        end = config.feature_dim + config.size_profile_shells
        parts.append(EmbeddingPart("size profile (intensity by distance)", config.feature_dim, end))
    return parts


def part_similarity_matrix(
    query: npt.NDArray[np.float32], stored: npt.NDArray[np.float32], parts: list[EmbeddingPart]
) -> npt.NDArray[np.float64]:
    """Cosine similarity of a query vector (D,) to each stored vector (N, D) within each block.

    Returns (N, len(parts)); 0 where a block is all zero. The blocks must tile ``[0, D)`` in
    order, as ``embedding_parts`` makes them.
    """
    starts = [p.start for p in parts]
    if starts[0] != 0 or any(a.stop != b.start for a, b in pairwise(parts)):
        raise ValueError("the blocks do not tile the vector")
    q = np.asarray(query, dtype=np.float64)[: parts[-1].stop]
    s = np.asarray(stored, dtype=np.float64)[:, : parts[-1].stop]
    dots = np.add.reduceat(s * q, starts, axis=1)
    norms = np.sqrt(np.add.reduceat(s * s, starts, axis=1) * np.add.reduceat(q * q, starts))
    out: npt.NDArray[np.float64] = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    return out


def _central(feature: Tensor, fraction: float) -> Tensor:
    """The central cube of a (N, C, D, H, W) map.

    ``fraction`` of each side, at least 1 voxel, with the parity of the side so the cube is
    centred exactly.
    """
    out = []
    for axis, size in zip((2, 3, 4), feature.shape[2:], strict=True):
        keep = max(1, round(size * fraction))
        if (size - keep) % 2:
            keep += 1
        out.append((axis, (size - keep) // 2, keep))
    for axis, start, keep in out:
        feature = feature.narrow(axis, start, keep)
    return feature


def pool_embedding(feature_maps: list[Tensor], config: NetworkConfig) -> Tensor:
    """The L2-normalised pooled features (N, feature_dim) from every encoder level's dense map."""
    if config.embedding_pool == "avg":
        return F.normalize(feature_maps[-1].float().mean(dim=(2, 3, 4)), dim=1)
    parts = [
        F.normalize(
            _central(f.float(), config.embedding_center_fraction).mean(dim=(2, 3, 4)), dim=1
        )
        for f in feature_maps
    ]
    return F.normalize(torch.cat(parts, dim=1), dim=1)


def shell_index(shape_zyx: tuple[int, ...], shells: int) -> Tensor:
    """Shell of every voxel of a (D, H, W) patch, (D, H, W) int64; ``shells`` for none.

    Shell i holds the voxels whose distance from the patch centre, in voxels, is in [i, i + 1);
    voxels beyond ``shells`` (or half the smallest side) belong to no shell.
    """
    axes = [torch.arange(n, dtype=torch.float32) - (n - 1) / 2.0 for n in shape_zyx]
    zz, yy, xx = torch.meshgrid(*axes, indexing="ij")
    radius = torch.sqrt(zz**2 + yy**2 + xx**2)
    limit = min(shells, min(shape_zyx) // 2)
    index = torch.floor(radius).long()
    return torch.where(index < limit, index, torch.full_like(index, shells))


def size_profile(x: Tensor, shells: int) -> Tensor:
    """Mean intensity of each shell around the patch centre, L2-normalised, (N, shells).

    ``x`` is the network's input (N, 1, D, H, W), scaled to the HU window.
    """
    index = shell_index(tuple(x.shape[2:]), shells).to(x.device).flatten()
    flat = x.float().flatten(1)  # (N, V)
    sums = torch.zeros(x.shape[0], shells + 1, device=x.device).index_add_(1, index, flat)
    counts = torch.bincount(index, minlength=shells + 1).clamp(min=1).to(flat.dtype)
    return F.normalize((sums / counts)[:, :shells], dim=1)


def search_vector(features: Tensor, x: Tensor, config: NetworkConfig) -> Tensor:
    """The search vector (N, embedding_dim): pooled features, and the size profile if weighted."""
    w = config.size_profile_weight
    if w <= 0:
        return features
    profile = size_profile(x, config.size_profile_shells)
    return torch.cat([features * (1.0 - w) ** 0.5, profile * w**0.5], dim=1)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3x3 conv + batch norm + ReLU layers."""
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm3d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv3d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm3d(c_out),
        nn.ReLU(inplace=True),
    )


class NoduleNet(nn.Module):
    """Encoder-decoder 3-D FCN for nodule vs non-nodule; ``embed`` gives the search vector.

    Input: (N, 1, D, H, W) patches from ``model.preprocessing.extract_patch`` (values in [0, 1]);
    D, H and W must be divisible by ``2**levels``. With ``config.segmentation`` it also gives the
    nodule's mask (``segment``, ``forward_with_mask``).
    """

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.width * 2**i for i in range(config.levels + 1)]
        self.encoder = nn.ModuleList(
            [_block(1, widths[0])]
            + [_block(widths[i], widths[i + 1]) for i in range(config.levels)]
        )
        self.decoder = nn.ModuleList(
            _block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(1, config.levels))
        )
        # Scores every voxel of the decoder's finest map (fully convolutional head).
        self.head = nn.Conv3d(widths[1] if config.levels > 1 else widths[-1], 1, kernel_size=1)
        if config.segmentation:
            # The decoder's finest map has widths[1] channels (the bottleneck's when levels == 1).
            self.seg_decoder = _block(widths[1] + widths[0], widths[0])
            self.seg_head = nn.Conv3d(widths[0], 1, kernel_size=1)
            # A nodule fills a few percent of a patch: start every voxel at that prior (sigmoid
            # -3 = 0.05, as RetinaNet's heads) so the first steps are not spent on the background.
            assert self.seg_head.bias is not None
            nn.init.constant_(self.seg_head.bias, SEGMENTATION_PRIOR_LOGIT)

    def _encode(self, x: Tensor) -> list[Tensor]:
        """Feature maps of every encoder level; the last one is the bottleneck."""
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else F.max_pool3d(x, 2))
            skips.append(x)
        return skips

    def forward_features(self, x: Tensor) -> Tensor:
        """The bottleneck (mid-layer) feature map, (N, embedding_dim, D/2**L, H/2**L, W/2**L)."""
        return self._encode(x)[-1]

    def _decode(self, skips: list[Tensor]) -> Tensor:
        """The decoder's finest map, (N, 2 * width, D/2, H/2, W/2), from the encoder's maps."""
        y = skips[-1]
        for block, skip in zip(self.decoder, reversed(skips[1:-1]), strict=True):
            y = F.interpolate(y, size=skip.shape[2:], mode="trilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        return y

    def _mask_logits(self, decoded: Tensor, full: Tensor) -> Tensor:
        """Mask logits (N, 1, D, H, W) from the decoder's finest map and the level-0 map."""
        if not self.config.segmentation:
            raise RuntimeError("this network has no segmentation branch (segmentation=False)")
        y = F.interpolate(decoded, size=full.shape[2:], mode="trilinear", align_corners=False)
        logits: Tensor = self.seg_head(self.seg_decoder(torch.cat([y, full], dim=1)))
        return logits

    def score_map(self, x: Tensor) -> Tensor:
        """Nodule logit of every location of the decoder's map, (N, 1, d, h, w)."""
        scores: Tensor = self.head(self._decode(self._encode(x)))
        return scores

    def forward(self, x: Tensor) -> Tensor:
        """Nodule logits, (N,): the mean of the score map."""
        return self.score_map(x).mean(dim=(1, 2, 3, 4))

    def segment(self, x: Tensor) -> Tensor:
        """Mask logits, (N, 1, D, H, W): one per input voxel (sigmoid >= 0.5 is the nodule).

        Raises:
            RuntimeError: the network was built without ``segmentation``.
        """
        skips = self._encode(x)
        return self._mask_logits(self._decode(skips), skips[0])

    def forward_with_mask(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Nodule logits (N,) as ``forward`` and mask logits (N, 1, D, H, W) as ``segment``.

        One encoder and decoder pass for both (training on both tasks).

        Raises:
            RuntimeError: the network was built without ``segmentation``.
        """
        skips = self._encode(x)
        decoded = self._decode(skips)
        nodule = self.head(decoded).mean(dim=(1, 2, 3, 4))
        return nodule, self._mask_logits(decoded, skips[0])

    def embed(self, x: Tensor) -> Tensor:
        """The search vector, (N, embedding_dim), float32, unit L2 norm (``search_vector``)."""
        return search_vector(pool_embedding(self._encode(x), self.config), x, self.config)
