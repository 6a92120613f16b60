"""nnMambaSeg (dense segmentation) and nnMambaLandmark (dense heatmaps), upstream module names.

Both: `in_conv` (stride 2) -> three res stages `layer1..3` (stride 2 each) with channel attention
`att1..3` on the skips -> trilinear decoder `up5..up8` / `conv5..conv8`. Spatial sizes must be
divisible by 16.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from nnmamba.networks.blocks import AttentionLayer, DoubleConv, check_input, make_res_layer
from nnmamba.networks.miccss import MambaLayer

SIZE_MULTIPLE = 16


class _DenseNet(nn.Module):
    """The shared dense encoder-decoder; `mamba_stages` says which of layer1..3 get a MambaLayer."""

    def __init__(self, in_ch: int, channels: int, blocks: int, out_channels: int, mamba_stages: tuple,
                 out_name: str):
        super().__init__()
        _check_hyperparameters(type(self).__name__, in_ch=in_ch, channels=channels, blocks=blocks,
                               **{out_name: out_channels})
        self.in_ch = in_ch
        self.in_conv = DoubleConv(in_ch, channels, stride=2, kernel_size=3)
        self.pooling = nn.AdaptiveAvgPool3d((1, 1, 1))
        widths = (channels, channels * 2, channels * 4, channels * 8)
        for stage in (1, 2, 3):
            inplanes, planes = widths[stage - 1], widths[stage]
            # one MambaLayer instance shared by blocks 1..blocks-1 of the stage
            mamba = MambaLayer(planes) if stage in mamba_stages else None
            setattr(self, f"att{stage}", AttentionLayer(inplanes))
            setattr(self, f"layer{stage}", make_res_layer(inplanes, planes, blocks, stride=2, mamba_layer=mamba))
        self.up5 = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)
        self.conv5 = DoubleConv(channels * 12, channels * 4)
        self.up6 = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)
        self.conv6 = DoubleConv(channels * 6, channels * 2)
        self.up7 = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)
        self.conv7 = DoubleConv(channels * 3, channels)
        self.up8 = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)
        self.conv8 = DoubleConv(channels, out_channels)

    def _scale(self, att: nn.Module, c: torch.Tensor) -> torch.Tensor:
        batch, channels = c.shape[:2]
        return att(self.pooling(c).reshape(batch, channels)).reshape(batch, channels, 1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, in_ch, k, j, i), sizes divisible by 16 -> (batch, out_channels, k, j, i)."""
        check_input(x, type(self).__name__, self.in_ch, SIZE_MULTIPLE)
        c1 = self.in_conv(x)
        scale_f1 = self._scale(self.att1, c1)
        c2 = self.layer1(c1)
        scale_f2 = self._scale(self.att2, c2)
        c3 = self.layer2(c2)
        scale_f3 = self._scale(self.att3, c3)
        c4 = self.layer3(c3)
        c5 = self.conv5(torch.cat([self.up5(c4), c3 * scale_f3], dim=1))
        c6 = self.conv6(torch.cat([self.up6(c5), c2 * scale_f2], dim=1))
        c7 = self.conv7(torch.cat([self.up7(c6), c1 * scale_f1], dim=1))
        return self.conv8(self.up8(c7))


class nnMambaSeg(_DenseNet):
    """nnMamba segmentation network: MICCSS layers in all three res stages.

    Example:
        >>> net = nnMambaSeg(in_ch=1, channels=32, blocks=3, number_classes=6).eval()
        >>> scores = net(torch.randn(1, 1, 64, 64, 64))     # (1, 6, 64, 64, 64)
    """

    def __init__(self, in_ch: int = 1, channels: int = 32, blocks: int = 3, number_classes: int = 6):
        super().__init__(in_ch, channels, blocks, number_classes, mamba_stages=(1, 2, 3),
                         out_name="number_classes")


class nnMambaLandmark(_DenseNet):
    """nnMamba landmark network: the dense network with one MICCSS layer, in the first res stage
    (shared by its blocks 1..blocks-1), and one heatmap channel per landmark.

    Example:
        >>> net = nnMambaLandmark(in_ch=1, channels=16, blocks=2, number_landmarks=5).eval()
        >>> heatmaps = net(torch.randn(1, 1, 64, 64, 64))   # (1, 5, 64, 64, 64)
    """

    def __init__(self, in_ch: int = 1, channels: int = 32, blocks: int = 3, number_landmarks: int = 1):
        super().__init__(in_ch, channels, blocks, number_landmarks, mamba_stages=(1,),
                         out_name="number_landmarks")


def _check_hyperparameters(network: str, **values: int) -> None:
    for key, value in values.items():
        minimum = 2 if key == "blocks" else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{network}: {key} must be an integer >= {minimum}, got {value!r}")
