"""The "Taming Mambas" networks: a residual-encoder U-Net with Mamba layers at voxel level.

Lumetti, Pipoli, Marchesini, Ficarra, Grana, Bolelli, "Taming Mambas for Voxel Level 3D Medical
Image Segmentation", arXiv:2410.15496 (code: LucaLumetti/TamingMambas, nnU-Net based). Written here
from the paper and that code; there are no published weights to be compatible with.

Backbone (nnU-Net "ResEnc" U-Net): a 3x3x3 conv stem, `n_stages` encoder stages of residual blocks
(the first block of every stage but the first strides by 2), a decoder of transposed convs +
concatenated skips + residual blocks, and a 1x1x1 conv head. InstanceNorm (affine), LeakyReLU.

A Mamba "transformer block" works on tokens (batch, L, C):  x = Mamba(LN(x)) + x;  x = Linear(LN(x)) + x.
The variants put it after every encoder stage (including the bottleneck):

- `TamingSegMamba`: one unidirectional block over the voxels in raster order (k slowest, i fastest)
  after a LayerNorm; the result replaces the stage output.
- `BiSegMamba`: as above with a bidirectional block: LN(fwd(x) + flip(bwd(flip(x)))), two blocks
  with their own weights, the second one scanning the tokens in reverse.
- `SegMambaSkip`: the bidirectional layer of BiSegMamba, but on the skip connections only: the
  encoder's main path stays convolutional, the decoder gets the Mamba-processed features.
- `MultiSegMamba`: four bidirectional blocks, each scanning the voxels in its own axis order, four
  of the six permutations of (k, j, i): (k,j,i), (k,i,j), (j,k,i), (i,k,j) (slowest axis first);
  their outputs, back in voxel order, are averaged per voxel. The result replaces the stage output.

The Mamba state size is min(channels, 256) (min(channels, 64) in MultiSegMamba) as in the authors'
code, unless `d_state` is given.

Example:
    >>> net = MultiSegMamba(in_ch=1, number_classes=3, channels=8, n_stages=3, blocks=1).eval()
    >>> scores = net(torch.randn(1, 1, 16, 16, 16))     # (1, 3, 16, 16, 16)
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from nnmamba.networks.blocks import check_input
from nnmamba.ssm.mamba import Mamba

# Four of the six axis orders of the spatial dims (0=k, 1=j, 2=i), slowest-varying axis first:
# permutations 0, 1, 2 and 4 of itertools.permutations((0, 1, 2)), as in the authors' code.
MULTI_SCAN_ORDERS: Tuple[Tuple[int, int, int], ...] = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (2, 0, 1))


def to_tokens(x: torch.Tensor, order: Sequence[int] = (0, 1, 2)) -> torch.Tensor:
    """x: (batch, C, s0, s1, s2) -> tokens (batch, L, C), voxels raster-ordered over the spatial
    axes `order` (slowest first)."""
    batch, channels = x.shape[:2]
    return x.permute(0, 1, *(2 + a for a in order)).reshape(batch, channels, -1).transpose(1, 2)


def from_tokens(tokens: torch.Tensor, spatial: Sequence[int], order: Sequence[int] = (0, 1, 2)) -> torch.Tensor:
    """Inverse of `to_tokens`: tokens (batch, L, C) -> (batch, C, *spatial)."""
    batch, _, channels = tokens.shape
    permuted = tokens.transpose(1, 2).reshape(batch, channels, *(spatial[a] for a in order))
    inverse = sorted(range(3), key=lambda a: order[a])
    return permuted.permute(0, 1, *(2 + a for a in inverse))


class MambaTransformerBlock(nn.Module):
    """x = mamba(norm1(x)) + x; x = head(norm2(x)) + x. (batch, L, C) -> same; causal in L."""

    def __init__(self, channels: int, d_state: int):
        super().__init__()
        self.mamba = Mamba(d_model=channels, d_state=d_state, d_conv=4, expand=2)
        self.norm1 = nn.LayerNorm(channels)
        self.norm2 = nn.LayerNorm(channels)
        self.head = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mamba(self.norm1(x)) + x
        return self.head(self.norm2(x)) + x


class BiMambaTransformerBlock(nn.Module):
    """norm(fwd(x) + flip(bwd(flip(x)))), flips along the token axis. (batch, L, C) -> same."""

    def __init__(self, channels: int, d_state: int):
        super().__init__()
        self.fwd_mamba = MambaTransformerBlock(channels, d_state)
        self.bwd_mamba = MambaTransformerBlock(channels, d_state)
        self.norm = nn.LayerNorm(channels)

    def forward_scan(self, x: torch.Tensor) -> torch.Tensor:
        """The forward branch: output at token t depends on tokens 0..t."""
        return self.fwd_mamba(x)

    def reversed_scan(self, x: torch.Tensor) -> torch.Tensor:
        """The reversed branch, back in token order: output at token t depends on tokens t..L-1."""
        return self.bwd_mamba(x.flip(1)).flip(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.forward_scan(x) + self.reversed_scan(x))


class TokenMambaLayer(nn.Module):
    """LayerNorm, then a (bi)directional Mamba block over the voxels in raster order.
    (batch, C, k, j, i) -> same shape."""

    def __init__(self, channels: int, d_state: int, bidirectional: bool):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        block = BiMambaTransformerBlock if bidirectional else MambaTransformerBlock
        self.mamba = block(channels, d_state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return from_tokens(self.mamba(self.norm(to_tokens(x))), x.shape[2:])


class MultiAxisMambaLayer(nn.Module):
    """One bidirectional Mamba block per scan order in `orders`; each scans the voxels raster-ordered
    over its axis order, its output is put back in voxel order, and the outputs are averaged per
    voxel. (batch, C, k, j, i) -> same shape."""

    def __init__(self, channels: int, d_state: int,
                 orders: Sequence[Sequence[int]] = MULTI_SCAN_ORDERS):
        super().__init__()
        self.orders = tuple(tuple(order) for order in orders)
        for order in self.orders:
            if sorted(order) != [0, 1, 2]:
                raise ValueError(f"a scan order is a permutation of (0, 1, 2), got {order}")
        self.mambas = nn.ModuleList([BiMambaTransformerBlock(channels, d_state) for _ in self.orders])

    def branch(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """The output of scan order `index` alone, in voxel order."""
        order = self.orders[index]
        return from_tokens(self.mambas[index](to_tokens(x, order)), x.shape[2:], order)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.branch(x, index) for index in range(len(self.orders))]).mean(dim=0)


def _norm(channels: int) -> nn.InstanceNorm3d:
    return nn.InstanceNorm3d(channels, eps=1e-5, affine=True)


class ResidualBlock(nn.Module):
    """nnU-Net BasicBlockD: conv-norm-act-conv-norm plus a shortcut (average pooling when strided,
    1x1x1 conv + norm when the channel count changes), then act."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.norm1 = _norm(out_channels)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels)
        self.act = nn.LeakyReLU(0.01, inplace=True)
        shortcut: List[nn.Module] = []
        if stride != 1:
            shortcut.append(nn.AvgPool3d(stride, stride))
        if in_channels != out_channels:
            shortcut += [nn.Conv3d(in_channels, out_channels, 1, bias=False), _norm(out_channels)]
        self.shortcut = nn.Sequential(*shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))
        return self.act(out + self.shortcut(x))


def _stack(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [ResidualBlock(in_channels, out_channels, stride)]
    layers += [ResidualBlock(out_channels, out_channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class TamingUNet(nn.Module):
    """Residual-encoder U-Net with a Mamba layer after every encoder stage; see the module docstring.

    `placement`: "stage" (the layer's output replaces the stage output) or "skip" (only the skip
    connections / bottleneck fed to the decoder go through it). `mixer`: "forward", "bidirectional"
    or "multi". Spatial sizes must be divisible by 2^(n_stages - 1).
    """

    def __init__(self, in_ch: int, number_classes: int, channels: int, n_stages: int,
                 blocks: Union[int, Sequence[int]], decoder_blocks: int, max_channels: int,
                 d_state: Optional[int], mixer: str, placement: str, name: str):
        super().__init__()
        blocks = [blocks] * n_stages if isinstance(blocks, int) else list(blocks)
        _check_hyperparameters(name, in_ch=in_ch, number_classes=number_classes, channels=channels,
                               n_stages=n_stages, decoder_blocks=decoder_blocks, max_channels=max_channels,
                               d_state=1 if d_state is None else d_state)
        if len(blocks) != n_stages or not all(isinstance(b, int) and b >= 1 for b in blocks):
            raise ValueError(f"{name}: blocks must be a positive integer or {n_stages} of them "
                             f"(one per stage), got {blocks!r}")
        self.name = name
        self.in_ch = in_ch
        self.placement = placement
        self.size_multiple = 2 ** (n_stages - 1)
        widths = [min(channels * 2 ** s, max_channels) for s in range(n_stages)]
        self.stem = nn.Sequential(nn.Conv3d(in_ch, widths[0], 3, padding=1), _norm(widths[0]),
                                  nn.LeakyReLU(0.01, inplace=True))
        self.stages = nn.ModuleList([
            _stack(widths[max(s - 1, 0)], widths[s], blocks[s], 1 if s == 0 else 2) for s in range(n_stages)])
        cap = 64 if mixer == "multi" else 256
        self.mamba_layers = nn.ModuleList([
            _mixer(mixer, width, d_state if d_state is not None else min(width, cap)) for width in widths])
        self.transpconvs = nn.ModuleList([
            nn.ConvTranspose3d(widths[s + 1], widths[s], 2, stride=2) for s in reversed(range(n_stages - 1))])
        self.decoder_stages = nn.ModuleList([
            _stack(2 * widths[s], widths[s], decoder_blocks, 1) for s in reversed(range(n_stages - 1))])
        self.head = nn.Conv3d(widths[0], number_classes, 1)

    def encode(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The features handed to the decoder, finest first (the last one is the bottleneck)."""
        x = self.stem(x)
        skips = []
        for stage, mamba in zip(self.stages, self.mamba_layers):
            x = stage(x)
            if self.placement == "stage":
                x = mamba(x)
                skips.append(x)
            else:
                skips.append(mamba(x))
        return skips

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, in_ch, k, j, i) -> scores (batch, number_classes, k, j, i)."""
        check_input(x, self.name, self.in_ch, self.size_multiple)
        skips = self.encode(x)
        x = skips[-1]
        for transpconv, stage, skip in zip(self.transpconvs, self.decoder_stages, reversed(skips[:-1])):
            x = stage(torch.cat((transpconv(x), skip), dim=1))
        return self.head(x)


def _mixer(kind: str, channels: int, d_state: int) -> nn.Module:
    if kind == "multi":
        return MultiAxisMambaLayer(channels, d_state)
    return TokenMambaLayer(channels, d_state, bidirectional=kind == "bidirectional")


class TamingSegMamba(TamingUNet):
    """U-Net + unidirectional Mamba after every encoder stage (Taming Mambas' "SegMamba").

    Example:
        >>> net = TamingSegMamba(in_ch=1, number_classes=2, channels=8, n_stages=3, blocks=1)
    """

    def __init__(self, in_ch: int = 1, number_classes: int = 2, channels: int = 32, n_stages: int = 5,
                 blocks: Union[int, Sequence[int]] = (1, 3, 4, 6, 6), decoder_blocks: int = 1,
                 max_channels: int = 320, d_state: Optional[int] = None):
        super().__init__(in_ch, number_classes, channels, n_stages, blocks, decoder_blocks, max_channels,
                         d_state, mixer="forward", placement="stage", name="TamingSegMamba")


class BiSegMamba(TamingUNet):
    """U-Net + bidirectional (forward + reversed) Mamba after every encoder stage.

    Example:
        >>> net = BiSegMamba(in_ch=1, number_classes=2, channels=8, n_stages=3, blocks=1)
    """

    def __init__(self, in_ch: int = 1, number_classes: int = 2, channels: int = 32, n_stages: int = 5,
                 blocks: Union[int, Sequence[int]] = (1, 3, 4, 6, 6), decoder_blocks: int = 1,
                 max_channels: int = 320, d_state: Optional[int] = None):
        super().__init__(in_ch, number_classes, channels, n_stages, blocks, decoder_blocks, max_channels,
                         d_state, mixer="bidirectional", placement="stage", name="BiSegMamba")


class SegMambaSkip(TamingUNet):
    """U-Net whose skip connections (and bottleneck) go through a bidirectional Mamba layer.

    Example:
        >>> net = SegMambaSkip(in_ch=1, number_classes=2, channels=8, n_stages=3, blocks=1)
    """

    def __init__(self, in_ch: int = 1, number_classes: int = 2, channels: int = 32, n_stages: int = 5,
                 blocks: Union[int, Sequence[int]] = (1, 3, 4, 6, 6), decoder_blocks: int = 1,
                 max_channels: int = 320, d_state: Optional[int] = None):
        super().__init__(in_ch, number_classes, channels, n_stages, blocks, decoder_blocks, max_channels,
                         d_state, mixer="bidirectional", placement="skip", name="SegMambaSkip")


class MultiSegMamba(TamingUNet):
    """U-Net + four bidirectional Mambas over four axis orders, averaged, after every encoder stage.

    Example:
        >>> net = MultiSegMamba(in_ch=1, number_classes=2, channels=8, n_stages=3, blocks=1)
    """

    def __init__(self, in_ch: int = 1, number_classes: int = 2, channels: int = 32, n_stages: int = 5,
                 blocks: Union[int, Sequence[int]] = (1, 3, 4, 6, 6), decoder_blocks: int = 1,
                 max_channels: int = 320, d_state: Optional[int] = None):
        super().__init__(in_ch, number_classes, channels, n_stages, blocks, decoder_blocks, max_channels,
                         d_state, mixer="multi", placement="stage", name="MultiSegMamba")


def _check_hyperparameters(name: str, **values) -> None:
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: {key} must be a positive integer, got {value!r}")
