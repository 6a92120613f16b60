"""`MambaLayer`: nnMamba's MICCSS block (mixed-directional state-space modelling on a 3D feature map).

The feature map is flattened to tokens x_flat: (batch, L, C). With `directions="miccss"` one shared
Mamba runs on x_flat and on three flips of it: tokens reversed (dim 1), channels reversed (dim 2, as
in the published code) and both; each result is flipped back and the four are averaged. The four
runs are one batched call (concatenated on the batch axis). `directions="forward"` runs x_flat only
(nnMambaEncoder's stem).

When the block's scan backend declares the channel-major layout (the CUDA kernels), the four runs
are rearranged without changing the maths: a channel flip of a Linear's input is the Linear with
its weight columns flipped, and flipping its output back is flipping the weight rows, so in_proj
runs with [W; W flipped] on x and its token flip (2x the batch, not 4x copies), the scans run on
the resulting 4x batch of (E, L) slices, and out_proj sums each channel-flip pair in one
matmul with [W_out | W_out flipped]; only the token flip is a copy, once in and once back.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from nnmamba.networks.blocks import conv1x1
from nnmamba.ssm.mamba import Mamba, channel_linear

# upstream order of the four terms: original, channel flip, token flip, both
_FLIPS = ((), (2,), (1,), (1, 2))
# what the fused inference form of this block (nnmamba.inference.fast_path) computes in: declared
# here, beside the block, so the planner can ask without importing the inference layer above it
FUSED_MICCSS_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class MambaLayer(nn.Module):
    """MICCSS block: (batch, dim, k, j, i) -> same shape.

    Example:
        >>> layer = MambaLayer(64)
        >>> y = layer(torch.randn(1, 64, 8, 8, 8))
    """

    def __init__(self, dim: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 directions: str = "miccss", scan_backend: str = "auto"):
        super().__init__()
        if directions not in ("miccss", "forward"):
            raise ValueError(f"directions must be 'miccss' or 'forward', got {directions!r}")
        self.dim = dim
        self.directions = directions
        # True: the four directions as one Mamba call on a 4x batch; False: four calls (same numbers)
        self.batch_directions = True
        self.nin = conv1x1(dim, dim)
        self.norm = nn.BatchNorm3d(dim)
        self.relu = nn.ReLU(inplace=True)
        self.mamba = Mamba(d_model=dim, d_state=d_state, d_conv=d_conv, expand=expand,
                           scan_backend=scan_backend)
        self.nin2 = conv1x1(dim, dim)
        self.norm2 = nn.BatchNorm3d(dim)
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels = x.shape[:2]
        if channels != self.dim:
            raise ValueError(f"MambaLayer was built for {self.dim} channels, got {channels}")
        x = self.relu(self.norm(self.nin(x)))
        act_x = x
        img_dims = x.shape[2:]
        x_cl = x.reshape(batch, channels, -1)                              # (batch, C, L), a view
        if self.directions == "miccss" and self.batch_directions and self.mamba.channel_major(x_cl):
            x_mamba = self._miccss_channel_major(x_cl)                     # (batch, C, L)
        else:
            x_tokens = x_cl.transpose(1, 2)                                # (batch, L, C)
            x_tokens = self.mamba(x_tokens) if self.directions == "forward" else self._miccss(x_tokens)
            x_mamba = x_tokens.transpose(1, 2)
        # act_x first: the sum takes act_x's memory layout (the network's), whatever the Mamba's was
        out = act_x + x_mamba.reshape(batch, channels, *img_dims)
        return self.relu2(self.norm2(self.nin2(out)))

    def _miccss(self, x_flat: torch.Tensor) -> torch.Tensor:
        """x_flat: (batch, L, C) -> mean over the four flipped directions, (batch, L, C)."""
        views = [x_flat.flip(dims) if dims else x_flat for dims in _FLIPS]
        if self.batch_directions:
            outs = self.mamba(torch.cat(views, dim=0)).chunk(len(_FLIPS), dim=0)
        else:
            outs = [self.mamba(v) for v in views]
        total = None
        for dims, out in zip(_FLIPS, outs):
            out = out.flip(dims) if dims else out
            total = out if total is None else total + out
        return total / len(_FLIPS)

    def _miccss_channel_major(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, C, L) -> mean over the four flipped directions, (batch, C, L); see the module
        docstring (same maths as `_miccss`)."""
        mamba, batch = self.mamba, x.shape[0]
        tokens = torch.cat([x, x.flip(-1)], dim=0)                          # (2 batch, C, L)
        halves = []
        for w, b in mamba.in_proj_halves():                                 # x, then z
            both = torch.cat([w, w.flip(1)], dim=0)                           # (2E, C): as is, channel flip
            half = channel_linear(both, tokens, None if b is None else torch.cat([b, b]))
            # (2 batch, 2E, L) -> (4 batch, E, L), a view: [as is, ch-flip, tok-flip, both] per sample
            halves.append(half.reshape(4 * batch, -1, half.shape[-1]))
        y = mamba.inner_channels(*halves, mamba.backend_for(x))            # (4 batch, E, L)
        w_out, b_out = mamba.out_proj.weight, mamba.out_proj.bias
        both_out = torch.cat([w_out, w_out.flip(0)], dim=1)                # (C, 2E)
        out = channel_linear(both_out, y.reshape(2 * batch, -1, y.shape[-1]),
                             None if b_out is None else b_out + b_out.flip(0))  # (2 batch, C, L)
        return (out[:batch] + out[batch:].flip(-1)) / len(_FLIPS)
