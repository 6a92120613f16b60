"""Convolutional building blocks shared by the nnMamba networks (upstream module names kept)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn


class Conv3d(nn.Conv3d):
    """nn.Conv3d that runs 3x3x3 kernels through oneDNN on CPU float32 (same parameters).

    PyTorch picks its slow reference kernel (slow_conv3d) for batch-1 inputs whose
    channels * k * j is below 20480, a rule tuned for 2-D convolutions: for the small deep feature
    maps of these networks oneDNN is 3-5x faster (measured on a 2-core AVX-512 CPU).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and x.dtype == torch.float32 and self.padding_mode == "zeros"
                and self.kernel_size != (1, 1, 1) and not isinstance(self.padding, str)
                and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
                and not torch.is_autocast_enabled("cpu")):  # autocast casts only nn.Conv3d's op
            return torch.ops.aten.mkldnn_convolution(x.contiguous(), self.weight, self.bias, self.padding,
                                                     self.stride, self.dilation, self.groups)
        return super().forward(x)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    """3x3x3 convolution, padding 1, no bias."""
    return Conv3d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    """1x1x1 convolution, no bias."""
    return nn.Conv3d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """ResNet basic block; with `mamba_layer`, out = bn2(conv2(...)) + mamba_layer(x) + identity."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None, mamba_layer: Optional[nn.Module] = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.mamba_layer = mamba_layer
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, inplanes, k, j, i) -> (batch, planes, k/stride, j/stride, i/stride)."""
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.mamba_layer is not None:
            out += self.mamba_layer(x)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


def make_res_layer(inplanes: int, planes: int, blocks: int, stride: int = 1,
                   mamba_layer: Optional[nn.Module] = None) -> nn.Sequential:
    """A downsampling BasicBlock, then `blocks - 1` BasicBlocks that all share `mamba_layer`."""
    downsample = nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm3d(planes))
    layers = [BasicBlock(inplanes, planes, stride, downsample)]
    for _ in range(1, blocks):
        layers.append(BasicBlock(planes, planes, mamba_layer=mamba_layer))
    return nn.Sequential(*layers)


class DoubleConv(nn.Module):
    """(conv, BN, ReLU) twice; the first conv may stride."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Sequential(
            Conv3d(in_ch, out_ch, kernel_size=kernel_size, stride=stride, padding=kernel_size // 2),
            nn.BatchNorm3d(out_ch),
            nn.ReLU(inplace=True),
            Conv3d(out_ch, out_ch, 3, padding=1),
            nn.BatchNorm3d(out_ch),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class AttentionLayer(nn.Module):
    """Channel attention on pooled features: (batch, dim) -> sigmoid weights (batch, dim, 1)."""

    def __init__(self, dim: int, r: int = 16):
        super().__init__()
        self.layer1 = nn.Linear(dim, dim // r)
        self.layer2 = nn.Linear(dim // r, dim)
        self.relu = nn.ReLU()
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sigmoid(self.layer2(self.relu(self.layer1(x)))).unsqueeze(-1)


def check_input(x: torch.Tensor, network: str, in_ch: int, multiple: int = 1) -> None:
    """ValueError unless x is (batch, in_ch, k, j, i) with every spatial size a multiple of `multiple`."""
    if not isinstance(x, torch.Tensor) or x.dim() != 5:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{network} expects a 5-D tensor (batch, channels, k, j, i), got {shape}")
    if x.shape[1] != in_ch:
        raise ValueError(f"{network} was built for {in_ch} input channel(s), got {x.shape[1]} "
                         f"(input shape {tuple(x.shape)})")
    bad = [s for s in x.shape[2:] if s < multiple or s % multiple]
    if bad:
        size = "x".join(str(s) for s in x.shape[2:])
        hints = "; ".join(f"{s} -> {_nearest(s, multiple)}" for s in bad)
        raise ValueError(f"{network} needs spatial sizes divisible by {multiple}, got {size} "
                         f"(nearest valid: {hints}); pad or crop the input (the inference pipeline pads)")


def _nearest(size: int, multiple: int) -> str:
    below = (size // multiple) * multiple
    above = below + multiple
    return f"{above}" if below == 0 else f"{below} or {above}"
