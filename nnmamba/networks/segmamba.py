"""SegMamba (Xing et al., MICCAI 2024; ge-xing/SegMamba) with the upstream module names.

A state_dict of upstream `model_segmamba.segmamba.SegMamba` loads here with strict=True, and the
forward maths are the same, so its checkpoints give the same outputs (checked against vectors made
by the upstream code: `scripts/make_segmamba_vectors.py`). Hyperparameters follow the project's
names: upstream `in_chans` is `in_ch`, `out_chans` is `number_classes`.

    stem: Conv3d 7x7x7 stride 2 -> 4 stages; stage i = [InstanceNorm + Conv3d 2x2x2 stride 2 (i>0)]
          -> GSC (gated spatial convolution) -> depths[i] x ToM layer (tri-orientated Mamba)
          -> InstanceNorm + MLP: the stage's output feature map
    decoder: MONAI UNETR-style residual blocks (`encoder1..5`, `decoder5..1`, `out`).

The tri-orientated Mamba (upstream's modified mamba-ssm `Mamba` with `bimamba_type="v3"`) runs
three scans with separate parameters over the same projected tokens and sums them before
`out_proj`: forward, reversed (suffix `_b`), and inter-slice (suffix `_s`): the L tokens are cut
into `nslices` consecutive groups and scanned group-interleaved (token i of every group, then
token i+1 of every group, ...). With the upstream 128^3 patch, stage i has 64/2^i slices of the
first spatial axis and nslices = 64/2^i, so the groups are exactly the slices.

Example:
    >>> net = SegMamba(in_ch=1, number_classes=3, feat_size=(48, 32, 64, 96), hidden_size=128).eval()
    >>> scores = net(torch.randn(1, 1, 64, 64, 64))     # (1, 3, 64, 64, 64)
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from nnmamba.networks.blocks import check_input
from nnmamba.ssm import backends
from nnmamba.ssm.mamba import Mamba
from nnmamba.ssm.reference_scan import scan_dtype

SIZE_MULTIPLE = 16
# upstream MambaEncoder's hard-wired num_slices_list (for 128^3 patches)
DEFAULT_NUM_SLICES = (64, 32, 16, 8)
_DIRECTIONS = ("", "_b", "_s")  # forward, backward, inter-slice parameter suffixes


class TriOrientedMamba(Mamba):
    """SegMamba's tri-orientated Mamba (mamba-ssm fork, bimamba_type "v3"): (batch, L, d_model) -> same.

    Parameters: Mamba v1's (`in_proj`, `conv1d`, `x_proj`, `dt_proj`, `A_log`, `D`, `out_proj`)
    plus a second and third set of `conv1d`, `x_proj`, `dt_proj`, `A_log`, `D` with suffixes `_b`
    (reversed scan) and `_s` (inter-slice scan). L must be divisible by `nslices`.

    Example:
        >>> block = TriOrientedMamba(d_model=16, nslices=4)
        >>> y = block(torch.randn(2, 24, 16))
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 nslices: int = 5, scan_backend: str = "auto", **mamba_kwargs):
        super().__init__(d_model, d_state=d_state, d_conv=d_conv, expand=expand,
                         scan_backend=scan_backend, **mamba_kwargs)
        if nslices < 1:
            raise ValueError(f"nslices must be >= 1, got {nslices}")
        self.nslices = nslices
        for suffix in _DIRECTIONS[1:]:
            self._add_direction(suffix, conv_bias=self.conv1d.bias is not None, **mamba_kwargs)

    def _add_direction(self, suffix: str, conv_bias: bool, dt_min: float = 0.001, dt_max: float = 0.1,
                       dt_init: str = "random", dt_scale: float = 1.0, dt_init_floor: float = 1e-4,
                       dtype=None, **_) -> None:
        """Parameters of one more scan direction, initialised as mamba-ssm initialises the first
        (A_log and D stay float32, as there)."""
        device = self.A_log.device
        factory = {"device": device, "dtype": dtype}
        conv = nn.Conv1d(self.d_inner, self.d_inner, kernel_size=self.d_conv, groups=self.d_inner,
                         padding=self.d_conv - 1, bias=conv_bias, **factory)
        x_proj = nn.Linear(self.d_inner, self.dt_rank + self.d_state * 2, bias=False, **factory)
        dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)
        std = self.dt_rank ** -0.5 * dt_scale
        with torch.no_grad():
            if dt_init == "constant":
                dt_proj.weight.fill_(std)
            else:
                dt_proj.weight.uniform_(-std, std)
            dt = torch.exp(torch.rand(self.d_inner, **factory) * (math.log(dt_max) - math.log(dt_min))
                           + math.log(dt_min)).clamp(min=dt_init_floor)
            dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus
        A = torch.arange(1, self.d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)
        A_log = nn.Parameter(torch.log(A))
        D = nn.Parameter(torch.ones(self.d_inner, device=device))
        A_log._no_weight_decay = True
        D._no_weight_decay = True
        setattr(self, f"conv1d{suffix}", conv)
        setattr(self, f"x_proj{suffix}", x_proj)
        setattr(self, f"dt_proj{suffix}", dt_proj)
        setattr(self, f"A{suffix}_log", A_log)
        setattr(self, f"D{suffix}", D)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """hidden_states: (batch, L, d_model), L divisible by nslices -> (batch, L, d_model)."""
        if hidden_states.dim() != 3 or hidden_states.shape[-1] != self.d_model:
            raise ValueError(f"TriOrientedMamba expects (batch, L, {self.d_model}), "
                             f"got {tuple(hidden_states.shape)}")
        length = hidden_states.shape[1]
        if length % self.nslices:
            raise ValueError(f"the inter-slice scan cuts the {length} tokens into nslices={self.nslices} "
                             f"equal groups, so the token count must be divisible by {self.nslices}")
        # the plan's (or planner's) backend for this forward's device, dtype and mode; the three
        # directions have no fused inner form, so the fused flag does not apply here
        scan = backends.get_backend(self.backend_for(hidden_states)).fn
        xz = F.linear(hidden_states, self.in_proj.weight, self.in_proj.bias).transpose(1, 2)  # (b, 2E, L)
        y = self.direction(xz, "", scan)
        y = y + self.direction(xz.flip(-1), "_b", scan).flip(-1)
        y = y + from_slice_order(self.direction(to_slice_order(xz, self.nslices), "_s", scan), self.nslices)
        return self.out_proj(y.transpose(1, 2))

    def direction(self, xz: torch.Tensor, suffix: str, scan) -> torch.Tensor:
        """One scan with the parameter set `suffix` over tokens in the given order.

        xz: (batch, 2 * d_inner, L) -> y: (batch, d_inner, L), gated by silu(z); causal in L.
        """
        length = xz.shape[-1]
        conv = getattr(self, f"conv1d{suffix}")
        dt_proj = getattr(self, f"dt_proj{suffix}")
        x, z = xz.chunk(2, dim=1)
        x = F.silu(F.conv1d(x, conv.weight, conv.bias, padding=self.d_conv - 1,
                            groups=self.d_inner)[..., :length])                       # (b, E, L)
        x_dbl = F.linear(x.transpose(1, 2), getattr(self, f"x_proj{suffix}").weight)  # (b, L, R + 2N)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, dt_proj.weight).transpose(1, 2)                             # (b, E, L)
        A_log = getattr(self, f"A{suffix}_log")
        A = -torch.exp(A_log.to(scan_dtype(A_log.dtype)))
        keep = scan_dtype(x.dtype)
        return scan(x, dt, A, B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous(),
                    getattr(self, f"D{suffix}").to(keep), z=z, delta_bias=dt_proj.bias.to(keep),
                    delta_softplus=True)


def to_slice_order(x: torch.Tensor, nslices: int) -> torch.Tensor:
    """Inter-slice token order: x (..., L) -> (..., L) with new position i * nslices + s holding old
    position s * (L / nslices) + i (token i of group s). Upstream: stack(chunk(x, nslices), -1).flatten(-2)."""
    return x.unflatten(-1, (nslices, x.shape[-1] // nslices)).transpose(-1, -2).flatten(-2)


def from_slice_order(x: torch.Tensor, nslices: int) -> torch.Tensor:
    """Inverse of `to_slice_order`."""
    return x.unflatten(-1, (x.shape[-1] // nslices, nslices)).transpose(-1, -2).flatten(-2)


class ToMambaLayer(nn.Module):
    """Upstream segmamba.MambaLayer: z = TriOrientedMamba(LayerNorm(z)) + z over the flattened
    feature map. (batch, dim, k, j, i) -> same shape."""

    def __init__(self, dim: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, num_slices: int = 5):
        super().__init__()
        self.dim = dim
        self.norm = nn.LayerNorm(dim)
        self.mamba = TriOrientedMamba(dim, d_state=d_state, d_conv=d_conv, expand=expand, nslices=num_slices)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels = x.shape[:2]
        if channels != self.dim:
            raise ValueError(f"ToMambaLayer was built for {self.dim} channels, got {channels}")
        tokens = x.reshape(batch, channels, -1).transpose(1, 2)             # (batch, L, C)
        out = self.mamba(self.norm(tokens))
        return out.transpose(1, 2).reshape(x.shape) + x


class MlpChannel(nn.Module):
    """1x1x1 conv -> GELU -> 1x1x1 conv (dim -> mlp_dim -> dim)."""

    def __init__(self, hidden_size: int, mlp_dim: int):
        super().__init__()
        self.fc1 = nn.Conv3d(hidden_size, mlp_dim, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv3d(mlp_dim, hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class GSC(nn.Module):
    """Gated spatial convolution: x + relu(norm4(proj4(branch3x3(x) + branch1x1(x)))); the 3x3
    branch is two (conv 3x3x3, InstanceNorm, ReLU), the 1x1 branch one (conv 1x1x1, InstanceNorm, ReLU)."""

    def __init__(self, channels: int):
        super().__init__()
        for index, kernel in (("", 3), ("2", 3), ("3", 1), ("4", 1)):
            setattr(self, f"proj{index}", nn.Conv3d(channels, channels, kernel, 1, kernel // 2))
            setattr(self, f"norm{index}", nn.InstanceNorm3d(channels))
            setattr(self, f"nonliner{index}", nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.nonliner(self.norm(self.proj(x)))
        x1 = self.nonliner2(self.norm2(self.proj2(x1)))
        x2 = self.nonliner3(self.norm3(self.proj3(x)))
        return self.nonliner4(self.norm4(self.proj4(x1 + x2))) + x


class MambaEncoder(nn.Module):
    """The four-stage encoder; returns the four stage outputs (after InstanceNorm + MLP)."""

    def __init__(self, in_chans: int, depths: Sequence[int], dims: Sequence[int],
                 num_slices: Sequence[int] = DEFAULT_NUM_SLICES):
        super().__init__()
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv3d(in_chans, dims[0], kernel_size=7, stride=2, padding=3))]
            + [nn.Sequential(nn.InstanceNorm3d(dims[i]), nn.Conv3d(dims[i], dims[i + 1], kernel_size=2, stride=2))
               for i in range(3)])
        self.gscs = nn.ModuleList([GSC(dims[i]) for i in range(4)])
        self.stages = nn.ModuleList([
            nn.Sequential(*[ToMambaLayer(dims[i], num_slices=num_slices[i]) for _ in range(depths[i])])
            for i in range(4)])
        for i in range(4):
            self.add_module(f"norm{i}", nn.InstanceNorm3d(dims[i]))
        self.mlps = nn.ModuleList([MlpChannel(dims[i], 2 * dims[i]) for i in range(4)])

    def forward(self, x: torch.Tensor) -> tuple:
        outs = []
        for i in range(4):
            x = self.stages[i](self.gscs[i](self.downsample_layers[i](x)))
            outs.append(self.mlps[i](getattr(self, f"norm{i}")(x)))
        return tuple(outs)


def _conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = False,
          transposed: bool = False) -> nn.Sequential:
    """MONAI `Convolution` with only its conv: a Sequential whose single child is named `conv`."""
    if transposed:
        conv = nn.ConvTranspose3d(in_channels, out_channels, kernel_size, stride=kernel_size, bias=bias)
    else:
        conv = nn.Conv3d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
    block = nn.Sequential()
    block.add_module("conv", conv)
    return block


class UnetResBlock(nn.Module):
    """MONAI UnetResBlock (stride 1, InstanceNorm without affine, LeakyReLU 0.01): two 3x3x3 convs
    with a residual; a 1x1x1 conv + norm on the residual when the channel count changes."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv1 = _conv(in_channels, out_channels, kernel_size)
        self.conv2 = _conv(out_channels, out_channels, kernel_size)
        self.lrelu = nn.LeakyReLU(negative_slope=0.01)
        self.norm1 = nn.InstanceNorm3d(out_channels)
        self.norm2 = nn.InstanceNorm3d(out_channels)
        if in_channels != out_channels:
            self.conv3 = _conv(in_channels, out_channels, 1)
            self.norm3 = nn.InstanceNorm3d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm2(self.conv2(self.lrelu(self.norm1(self.conv1(x)))))
        residual = self.norm3(self.conv3(x)) if hasattr(self, "conv3") else x
        return self.lrelu(out + residual)


class UnetrBasicBlock(nn.Module):
    """MONAI UnetrBasicBlock with res_block=True: one UnetResBlock named `layer`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.layer = UnetResBlock(in_channels, out_channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class UnetrUpBlock(nn.Module):
    """MONAI UnetrUpBlock with res_block=True: transposed conv x2 (no bias), concatenate the skip,
    UnetResBlock(2 * out -> out)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, upsample_kernel_size: int = 2):
        super().__init__()
        self.transp_conv = _conv(in_channels, out_channels, upsample_kernel_size, transposed=True)
        self.conv_block = UnetResBlock(out_channels * 2, out_channels, kernel_size)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat((self.transp_conv(x), skip), dim=1))


class UnetOutBlock(nn.Module):
    """MONAI UnetOutBlock: a 1x1x1 conv with bias."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = _conv(in_channels, out_channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SegMamba(nn.Module):
    """SegMamba segmentation network: (batch, in_ch, k, j, i) -> scores (batch, number_classes, k, j, i).

    Spatial sizes must be divisible by 16, and stage i's token count (the product of the sizes
    / 2^(i+1) each) by num_slices[i]; a 128^3 patch with the default num_slices is the upstream
    setting. feat_size[0] is 48 in every upstream model (its output block is hard-wired to 48).

    Example:
        >>> net = SegMamba(in_ch=4, number_classes=3).eval()          # the upstream BraTS setting
        >>> scores = net(torch.randn(1, 4, 128, 128, 128))
    """

    def __init__(self, in_ch: int = 1, number_classes: int = 13, depths: Sequence[int] = (2, 2, 2, 2),
                 feat_size: Sequence[int] = (48, 96, 192, 384), hidden_size: int = 768,
                 num_slices: Sequence[int] = DEFAULT_NUM_SLICES):
        super().__init__()
        _check_hyperparameters(in_ch=in_ch, number_classes=number_classes, depths=depths,
                               feat_size=feat_size, hidden_size=hidden_size, num_slices=num_slices)
        self.in_ch = in_ch
        self.num_slices = tuple(num_slices)
        self.vit = MambaEncoder(in_ch, depths=depths, dims=feat_size, num_slices=num_slices)
        self.encoder1 = UnetrBasicBlock(in_ch, feat_size[0])
        self.encoder2 = UnetrBasicBlock(feat_size[0], feat_size[1])
        self.encoder3 = UnetrBasicBlock(feat_size[1], feat_size[2])
        self.encoder4 = UnetrBasicBlock(feat_size[2], feat_size[3])
        self.encoder5 = UnetrBasicBlock(feat_size[3], hidden_size)
        self.decoder5 = UnetrUpBlock(hidden_size, feat_size[3])
        self.decoder4 = UnetrUpBlock(feat_size[3], feat_size[2])
        self.decoder3 = UnetrUpBlock(feat_size[2], feat_size[1])
        self.decoder2 = UnetrUpBlock(feat_size[1], feat_size[0])
        self.decoder1 = UnetrBasicBlock(feat_size[0], feat_size[0])
        self.out = UnetOutBlock(feat_size[0], number_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, in_ch, k, j, i) -> (batch, number_classes, k, j, i)."""
        check_input(x, "SegMamba", self.in_ch, SIZE_MULTIPLE)
        self._check_slices(x.shape[2:])
        outs = self.vit(x)
        enc1 = self.encoder1(x)
        enc2 = self.encoder2(outs[0])
        enc3 = self.encoder3(outs[1])
        enc4 = self.encoder4(outs[2])
        hidden = self.encoder5(outs[3])
        dec3 = self.decoder5(hidden, enc4)
        dec2 = self.decoder4(dec3, enc3)
        dec1 = self.decoder3(dec2, enc2)
        dec0 = self.decoder2(dec1, enc1)
        return self.out(self.decoder1(dec0))

    def _check_slices(self, spatial: Sequence[int]) -> None:
        for stage, nslices in enumerate(self.num_slices):
            tokens = 1
            for size in spatial:
                tokens *= size // 2 ** (stage + 1)
            if tokens % nslices:
                size = "x".join(str(s) for s in spatial)
                raise ValueError(
                    f"SegMamba's inter-slice scan at stage {stage} cuts its {tokens} tokens (input {size} / "
                    f"{2 ** (stage + 1)}) into num_slices[{stage}]={nslices} groups, which needs a multiple of "
                    f"{nslices}; use a larger input (e.g. 128x128x128 for num_slices={list(self.num_slices)}) "
                    f"or build the network with other num_slices")


def _check_hyperparameters(**values) -> None:
    for key in ("in_ch", "number_classes", "hidden_size"):
        if not isinstance(values[key], int) or values[key] < 1:
            raise ValueError(f"SegMamba: {key} must be a positive integer, got {values[key]!r}")
    for key in ("depths", "feat_size", "num_slices"):
        value = values[key]
        if (not isinstance(value, (list, tuple)) or len(value) != 4
                or not all(isinstance(v, int) and v >= (0 if key == "depths" else 1) for v in value)):
            raise ValueError(f"SegMamba: {key} must be 4 integers (one per stage), got {value!r}")
