"""nnMambaEncoder: nnMamba's classification network (upstream nnMamba4cls.py module names)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from nnmamba.networks.blocks import DoubleConv, check_input, make_res_layer
from nnmamba.networks.miccss import MambaLayer
from nnmamba.networks.nnmamba_seg import _check_hyperparameters


class nnMambaEncoder(nn.Module):
    """Stem + one forward-direction MambaLayer (d_state 8) + three plain res stages; the pooled
    features of the three stages (channels * 14) go through an MLP (Linear -> ReLU -> Dropout ->
    Linear) to `number_classes` logits.

    head_width (default: `channels`) and head_dropout (default 0.5) are upstream's when left out, so
    upstream checkpoints load strictly; upstream's 8-unit, half-dropped head barely learns on a few
    training volumes, so our own cards declare a wider head without dropout.

    Example:
        >>> net = nnMambaEncoder(in_ch=1, channels=16, blocks=2, number_classes=3).eval()
        >>> logits = net(torch.randn(2, 1, 32, 32, 32))     # (2, 3)
    """

    def __init__(self, in_ch: int = 1, channels: int = 32, blocks: int = 3, number_classes: int = 1,
                 head_width: Optional[int] = None, head_dropout: float = 0.5):
        super().__init__()
        head_width = channels if head_width is None else head_width
        _check_hyperparameters("nnMambaEncoder", in_ch=in_ch, channels=channels, blocks=blocks,
                               number_classes=number_classes, head_width=head_width)
        if isinstance(head_dropout, bool) or not isinstance(head_dropout, (int, float)) or not 0 <= head_dropout < 1:
            raise ValueError(f"nnMambaEncoder: head_dropout must be a number in [0, 1), got {head_dropout!r}")
        self.in_ch = in_ch
        self.in_conv = DoubleConv(in_ch, channels, stride=2, kernel_size=3)
        self.mamba_layer_stem = MambaLayer(channels, d_state=8, d_conv=4, expand=2, directions="forward")
        self.layer1 = make_res_layer(channels, channels * 2, blocks, stride=2)
        self.layer2 = make_res_layer(channels * 2, channels * 4, blocks, stride=2)
        self.layer3 = make_res_layer(channels * 4, channels * 8, blocks, stride=2)
        self.pooling = nn.AdaptiveAvgPool3d((1, 1, 1))
        # module names mlp.0 / mlp.3 as upstream's, whatever the width
        self.mlp = nn.Sequential(nn.Linear(channels * 14, head_width), nn.ReLU(), nn.Dropout(float(head_dropout)),
                                 nn.Linear(head_width, number_classes))

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
