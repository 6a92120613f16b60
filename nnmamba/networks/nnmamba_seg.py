"""nnMambaSeg (dense segmentation) and nnMambaLandmark (dense heatmaps), upstream module names.

Both: `in_conv` (stride 2) -> three res stages `layer1..3` (stride 2 each) with channel attention
`att1..3` on the skips -> trilinear decoder `up5..up8` / `conv5..conv8`. Spatial sizes must be
divisible by 16.

The output head is a hyperparameter. `head="upstream"` (the default) is upstream's `conv8`, a
DoubleConv ending in BatchNorm + ReLU, so upstream checkpoints load with strict=True. Its scores
cannot go below zero: under Adam with ~99 % background a foreground class pushed below the ReLU
gets no gradient and dies (see docs/training.md). Our own models use `head="linear"`: conv3 -> BN
-> ReLU -> 1x1 conv with bias (scores of any sign), optionally with `deep_supervision`: 1x1 heads on
the decoder stages (1/2, 1/4, 1/8 resolution) whose outputs training adds to the loss, as nnU-Net
trains this network upstream.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from nnmamba.networks.blocks import AttentionLayer, Conv3d, DoubleConv, check_input, make_res_layer
from nnmamba.networks.miccss import MambaLayer

SIZE_MULTIPLE = 16
HEADS = ("upstream", "linear")


class LinearHead(nn.Module):
    """conv3 -> BN -> ReLU -> 1x1 conv with bias: output scores of any sign."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Sequential(Conv3d(in_ch, in_ch, 3, padding=1), nn.BatchNorm3d(in_ch), nn.ReLU(inplace=True))
        self.out = nn.Conv3d(in_ch, out_ch, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.conv(x))


class _DenseNet(nn.Module):
    """The shared dense encoder-decoder; `mamba_stages` says which of layer1..3 get a MambaLayer."""

    def __init__(self, in_ch: int, channels: int, blocks: int, out_channels: int, mamba_stages: tuple,
                 out_name: str, head: str = "upstream", deep_supervision: bool = False):
        super().__init__()
        _check_hyperparameters(type(self).__name__, in_ch=in_ch, channels=channels, blocks=blocks,
                               **{out_name: out_channels})
        if head not in HEADS:
            raise ValueError(f"{type(self).__name__}: head must be one of {HEADS}, got {head!r}")
        if deep_supervision and head != "linear":
            raise ValueError(f"{type(self).__name__}: deep_supervision needs head='linear' (upstream's head "
                             f"has no deep-supervision outputs)")
        self.in_ch = in_ch
        self.deep_supervision = bool(deep_supervision)
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
        self.conv8 = DoubleConv(channels, out_channels) if head == "upstream" else LinearHead(channels, out_channels)
        if self.deep_supervision:
            self.ds5 = nn.Conv3d(channels * 4, out_channels, 1)
            self.ds6 = nn.Conv3d(channels * 2, out_channels, 1)
            self.ds7 = nn.Conv3d(channels, out_channels, 1)

    def _scale(self, att: nn.Module, c: torch.Tensor) -> torch.Tensor:
        batch, channels = c.shape[:2]
        return att(self.pooling(c).reshape(batch, channels)).reshape(batch, channels, 1, 1, 1)

    def forward(self, x: torch.Tensor):
        """x: (batch, in_ch, k, j, i), sizes divisible by 16 -> (batch, out_channels, k, j, i).

        In training mode with deep supervision: (that, [(batch, out, k/2, ..), (../4), (../8)])."""
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
        out = self.conv8(self.up8(c7))
        if self.deep_supervision and self.training:
            return out, [self.ds7(c7), self.ds6(c6), self.ds5(c5)]
        return out


class nnMambaSeg(_DenseNet):
    """nnMamba segmentation network: MICCSS layers in all three res stages.

    Example:
        >>> net = nnMambaSeg(in_ch=1, channels=32, blocks=3, number_classes=6).eval()
        >>> scores = net(torch.randn(1, 1, 64, 64, 64))     # (1, 6, 64, 64, 64)
    """

    def __init__(self, in_ch: int = 1, channels: int = 32, blocks: int = 3, number_classes: int = 6,
                 head: str = "upstream", deep_supervision: bool = False):
        super().__init__(in_ch, channels, blocks, number_classes, mamba_stages=(1, 2, 3),
                         out_name="number_classes", head=head, deep_supervision=deep_supervision)


class nnMambaLandmark(_DenseNet):
    """nnMamba landmark network: the dense network with one MICCSS layer, in the first res stage
    (shared by its blocks 1..blocks-1), and one heatmap channel per landmark.

    Example:
        >>> net = nnMambaLandmark(in_ch=1, channels=16, blocks=2, number_landmarks=5).eval()
        >>> heatmaps = net(torch.randn(1, 1, 64, 64, 64))   # (1, 5, 64, 64, 64)
    """

    def __init__(self, in_ch: int = 1, channels: int = 32, blocks: int = 3, number_landmarks: int = 1,
                 head: str = "upstream", deep_supervision: bool = False):
        super().__init__(in_ch, channels, blocks, number_landmarks, mamba_stages=(1,),
                         out_name="number_landmarks", head=head, deep_supervision=deep_supervision)


def _check_hyperparameters(network: str, **values: int) -> None:
    for key, value in values.items():
        minimum = 2 if key == "blocks" else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{network}: {key} must be an integer >= {minimum}, got {value!r}")
