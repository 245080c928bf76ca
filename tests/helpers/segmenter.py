"""A network whose mask branch is a known HU threshold, for tests of the mask's plumbing.

Untrained mask branches say "no nodule" everywhere, and a trained one takes minutes. This one
is set by hand: encoder level 0's first channel carries ``relu(x - t)`` (``x`` the windowed
patch, ``t`` the threshold's window value), the mask branch's first channel passes it on and its
head turns it into a steep logit, so the branch's mask is "at or above ``threshold_hu``". The
rest of the network keeps its random weights (its vectors stay well defined).
"""

from __future__ import annotations

import torch
from torch import nn

from model.nn.network import NetworkConfig, NoduleNet
from model.preprocessing import PatchSpec


def _pass_channel(conv: nn.Module, out_channel: int, in_channel: int) -> None:
    """Make ``conv``'s output channel copy one input channel (the 3x3x3 kernel's centre)."""
    assert isinstance(conv, nn.Conv3d)
    conv.weight[out_channel].zero_()
    conv.weight[out_channel, in_channel, 1, 1, 1] = 1.0


def _identity_norm(norm: nn.Module, channel: int, bias: float = 0.0) -> None:
    assert isinstance(norm, nn.BatchNorm3d)
    norm.running_mean[channel] = 0.0  # type: ignore[index]
    norm.running_var[channel] = 1.0  # type: ignore[index]
    norm.weight[channel] = 1.0
    norm.bias[channel] = bias


def threshold_segmenter(spec: PatchSpec, threshold_hu: float = -600.0) -> NoduleNet:
    """A small segmenting network (width 4, 3 levels) whose mask is ``HU >= threshold_hu``."""
    torch.manual_seed(0)
    network = NoduleNet(NetworkConfig(width=4, levels=3, segmentation=True))
    network.train()
    with torch.no_grad():
        network(torch.rand(4, 1, *spec.patch_shape_zyx))  # running statistics for the encoder
    network.eval()
    low, high = spec.hu_window
    t = (threshold_hu - low) / (high - low)
    with torch.no_grad():
        first = network.encoder[0]
        decoder = network.seg_decoder
        assert isinstance(first, nn.Sequential)
        assert isinstance(decoder, nn.Sequential)
        _pass_channel(first[0], 0, 0)
        _identity_norm(first[1], 0, bias=-t)
        _pass_channel(first[3], 0, 0)
        _identity_norm(first[4], 0)
        skip_at = network.config.width * 2  # cat([decoded (2 x width channels), level 0])
        _pass_channel(decoder[0], 0, skip_at)
        _identity_norm(decoder[1], 0)
        _pass_channel(decoder[3], 0, 0)
        _identity_norm(decoder[4], 0)
        network.seg_head.weight.zero_()
        network.seg_head.weight[0, 0] = 2000.0  # relu(x - t) of 1 HU is 1 / 1400: logit ~ 0.4
        assert network.seg_head.bias is not None
        network.seg_head.bias.fill_(-0.5)
    return network
