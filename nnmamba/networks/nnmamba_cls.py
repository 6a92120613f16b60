"""nnMambaEncoder: nnMamba's classification network (upstream nnMamba4cls.py module names)."""

from __future__ import annotations

import torch
import torch.nn as nn

from nnmamba.networks.blocks import DoubleConv, check_input, make_res_layer
from nnmamba.networks.miccss import MambaLayer
from nnmamba.networks.nnmamba_seg import _check_hyperparameters


class nnMambaEncoder(nn.Module):
    """Stem + one forward-direction MambaLayer (d_state 8) + three plain res stages; the pooled
    features of the three stages (channels * 14) go through an MLP to `number_classes` logits.

    Example:
        >>> net = nnMambaEncoder(in_ch=1, channels=16, blocks=2, number_classes=3).eval()
        >>> logits = net(torch.randn(2, 1, 32, 32, 32))     # (2, 3)
    """

    def __init__(self, in_ch: int = 1, channels: int = 32, blocks: int = 3, number_classes: int = 1):
        super().__init__()
        _check_hyperparameters("nnMambaEncoder", in_ch=in_ch, channels=channels, blocks=blocks,
                               number_classes=number_classes)
        self.in_ch = in_ch
        self.in_conv = DoubleConv(in_ch, channels, stride=2, kernel_size=3)
        self.mamba_layer_stem = MambaLayer(channels, d_state=8, d_conv=4, expand=2, directions="forward")
        self.layer1 = make_res_layer(channels, channels * 2, blocks, stride=2)
        self.layer2 = make_res_layer(channels * 2, channels * 4, blocks, stride=2)
        self.layer3 = make_res_layer(channels * 4, channels * 8, blocks, stride=2)
        self.pooling = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.mlp = nn.Sequential(nn.Linear(channels * 14, channels), nn.ReLU(), nn.Dropout(0.5),
                                 nn.Linear(channels, number_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, in_ch, k, j, i) -> logits (batch, number_classes)."""
        check_input(x, "nnMambaEncoder", self.in_ch)
        c1 = self.in_conv(x)
        c1_s = self.mamba_layer_stem(c1) + c1
        c2 = self.layer1(c1_s)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        batch = x.shape[0]
        features = torch.cat([self.pooling(c).reshape(batch, -1) for c in (c2, c3, c4)], dim=1)
        return self.mlp(features)
