"""Fast inference copy of an nnMamba network for NVIDIA GPUs (eval only; weights unchanged).

`prepare_for_inference(model, dtype)` returns a copy that computes the same function with
1. every BatchNorm folded into the convolution before it (eval statistics, exact up to rounding);
2. every MICCSS `MambaLayer` replaced by `FusedMiccss`: no flips, transposes or concatenations.
   The channel flips become in_proj/out_proj weights with reversed columns/rows, the token flips
   become scans run from the end (conv taps mirrored), the four scans run in one Triton launch with
   dt_proj and softplus fused in, and the average of the four out_proj's is one GEMM over the
   stacked streams. Scan state and arithmetic stay float32 whatever `dtype` is;
3. trilinear x2 upsampling in one Triton kernel (PyTorch's took ~2 ms per 128^3 tile on an H100);
4. weights in `dtype` (float32, bfloat16 or float16) and channels-last 3-D memory layout, which
   spares cuDNN its layout conversions around every convolution.
Single-direction Mamba layers (nnMambaEncoder's stem) run unchanged, in float32.

`nnmamba.inference.cuda_graph.GraphedNetwork` then replays the whole forward for a fixed tile shape.

Example:
    >>> fast = prepare_for_inference(net.cuda(), torch.bfloat16)
    >>> scores = fast(tile.cuda())          # tile: (batch, in_ch, k, j, i), any float dtype
"""

from __future__ import annotations

import copy
from typing import Dict, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from nnmamba.networks.miccss import FUSED_MICCSS_DTYPES as SUPPORTED_DTYPES
from nnmamba.networks.miccss import MambaLayer
# (conv, bn) attribute pairs of the upstream blocks whose conv feeds only that BatchNorm
_CONV_BN_ATTRS = (("conv1", "bn1"), ("conv2", "bn2"), ("nin", "norm"), ("nin2", "norm2"))


def prepare_for_inference(model: nn.Module, dtype: torch.dtype = torch.float32,
                          channels_last: bool = True) -> nn.Module:
    """A copy of `model` (on its device) for fast inference; see the module docstring.

    The copy takes any floating input and returns `dtype` output; it is in eval mode and keeps
    no gradients. Raises ValueError for an unsupported dtype and RuntimeError when the model holds
    MICCSS layers but is not on a CUDA device with Triton (the fused scans need both).
    """
    if dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"dtype must be one of {[str(d) for d in SUPPORTED_DTYPES]}, got {dtype}")
    fast = copy.deepcopy(model).eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    fold_batchnorm(fast)
    fused: Dict[int, nn.Module] = {}
    for parent, name, layer in _mamba_layers(fast):
        if id(layer) not in fused:
            fused[id(layer)] = (FusedMiccss(layer, dtype) if layer.directions == "miccss"
                                else _Float32Island(layer))
    for parent, name, child in _children(fast):
        if _is_trilinear_x2(child):
            setattr(parent, name, Upsample2x())
    fast.to(dtype)  # the fused modules are not in the tree yet: their float32 parts stay float32
    for parent, name, layer in _mamba_layers(fast):
        setattr(parent, name, fused[id(layer)])
    if channels_last:
        fast.to(memory_format=torch.channels_last_3d)
    return _CastInput(fast, dtype, channels_last)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold each eval BatchNorm3d into the Conv3d that feeds it (in place); the BN becomes Identity.

    Folds (Conv3d, BatchNorm3d) neighbours in every nn.Sequential and the attribute pairs of the
    upstream blocks (conv1/bn1, conv2/bn2, nin/norm, nin2/norm2). Returns `model`.
    """
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            children = list(module.children())
            for i in range(len(children) - 1):
                conv, bn = children[i], children[i + 1]
                if isinstance(conv, nn.Conv3d) and isinstance(bn, nn.BatchNorm3d):
                    _fold_into(conv, bn)
                    module[i + 1] = nn.Identity()
        for conv_name, bn_name in _CONV_BN_ATTRS:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv3d) and isinstance(bn, nn.BatchNorm3d):
                _fold_into(conv, bn)
                setattr(module, bn_name, nn.Identity())
    return model


def _fold_into(conv: nn.Conv3d, bn: nn.BatchNorm3d) -> None:
    if bn.running_mean is None or not bn.affine:
        raise ValueError("can only fold BatchNorm3d with running statistics and affine parameters")
    with torch.no_grad():
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
        new_bias = (bias - bn.running_mean.double()) * scale + bn.bias.double()
        conv.weight.copy_((conv.weight.double() * scale.view(-1, 1, 1, 1, 1)).to(conv.weight.dtype))
        if conv.bias is None:
            conv.bias = nn.Parameter(new_bias.to(conv.weight.dtype), requires_grad=False)
        else:
            conv.bias.copy_(new_bias.to(conv.bias.dtype))


def _children(model: nn.Module) -> List[Tuple[nn.Module, str, nn.Module]]:
    return [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()]


def _is_trilinear_x2(module: nn.Module) -> bool:
    if not isinstance(module, nn.Upsample) or module.size is not None:
        return False
    factors = module.scale_factor if isinstance(module.scale_factor, tuple) else (module.scale_factor,)
    return module.mode == "trilinear" and not module.align_corners and all(float(f) == 2.0 for f in factors)


class Upsample2x(nn.Module):
    """nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False) as one Triton kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from nnmamba.ssm.triton_scan import upsample2x_trilinear

        return upsample2x_trilinear(x)


def _mamba_layers(model: nn.Module) -> List[Tuple[nn.Module, str, nn.Module]]:
    found = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, MambaLayer):
                found.append((parent, name, child))
    return found


class FusedMiccss(nn.Module):
    """Inference form of a MICCSS `MambaLayer` whose BatchNorms were folded: (batch, C, k, j, i) -> same.

    Buffers: w_in (4E, C) = in_proj for the given and the reversed channel order, stacked;
    w_out (C, 4E) = out_proj / 4 for the four streams (channel-reversed rows for the last two).
    """

    def __init__(self, layer: MambaLayer, dtype: torch.dtype):
        super().__init__()
        if not isinstance(layer.norm, nn.Identity) or not isinstance(layer.norm2, nn.Identity):
            raise ValueError("FusedMiccss needs a MambaLayer whose BatchNorms are folded (fold_batchnorm)")
        mamba = layer.mamba
        self.nin = layer.nin
        self.nin2 = layer.nin2
        self.d_inner = mamba.d_inner
        with torch.no_grad():
            w_in = mamba.in_proj.weight.float()
            self.register_buffer("w_in", torch.cat([w_in, w_in.flip(1)], dim=0).to(dtype))
            b_in = mamba.in_proj.bias
            self.register_buffer("b_in", None if b_in is None else b_in.float().repeat(2).to(dtype))
            w_out = mamba.out_proj.weight.float()
            w_out_flip = w_out.flip(0)
            self.register_buffer("w_out", (torch.cat([w_out, w_out, w_out_flip, w_out_flip], dim=1) / 4)
                                 .to(dtype))
            b_out = mamba.out_proj.bias
            self.register_buffer("b_out", None if b_out is None
                                 else ((b_out.float() + b_out.float().flip(0)) / 2).to(dtype))
            self.register_buffer("conv_w", mamba.conv1d.weight[:, 0, :].to(dtype).contiguous())
            conv_b = mamba.conv1d.bias
            self.register_buffer("conv_b", (mamba.conv1d.weight.new_zeros(self.d_inner) if conv_b is None
                                            else conv_b).float().contiguous())
            self.register_buffer("x_proj_w", mamba.x_proj.weight.to(dtype).contiguous())
            # the scan's own parameters stay float32 (mamba-ssm keeps A_log, D and the dt bias so)
            self.register_buffer("dt_w", mamba.dt_proj.weight.float().contiguous())
            self.register_buffer("dt_b", mamba.dt_proj.bias.float().contiguous())
            self.register_buffer("A", (-torch.exp(mamba.A_log.float())).contiguous())
            self.register_buffer("D", mamba.D.float().contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from nnmamba.ssm.triton_scan import miccss_scans

        batch, channels = x.shape[:2]
        dims = x.shape[2:]
        act = F.relu(self.nin(x), inplace=True)
        tokens = act.reshape(batch, channels, -1)                                # (B, C, L)
        length = tokens.shape[-1]
        xz = torch.matmul(self.w_in, tokens)                                     # (B, 4E, L)
        if self.b_in is not None:
            xz = xz + self.b_in[:, None]
        ys = miccss_scans(xz.view(batch, 2, 2 * self.d_inner, length), self.conv_w, self.conv_b,
                          self.x_proj_w, self.dt_w, self.dt_b, self.A, self.D)   # (B, 4, E, L)
        mixed = torch.matmul(self.w_out, ys.view(batch, 4 * self.d_inner, length))  # (B, C, L)
        if self.b_out is not None:
            mixed = mixed + self.b_out[:, None]
        out = mixed.view(batch, channels, *dims) + act
        return F.relu(self.nin2(out), inplace=True)


class _Float32Island(nn.Module):
    """Runs a (single-direction) MambaLayer in float32 inside a lower-precision network."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = copy.deepcopy(layer).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.float()).to(x.dtype)


class _CastInput(nn.Module):
    """Casts the input to the network's dtype (and channels-last layout) before the forward."""

    def __init__(self, network: nn.Module, dtype: torch.dtype, channels_last: bool):
        super().__init__()
        self.network = network
        self.dtype = dtype
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)
        if self.channels_last and x.dim() == 5:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return self.network(x)
