"""`MambaLayer`: nnMamba's MICCSS block (mixed-directional state-space modelling on a 3D feature map).

The feature map is flattened to tokens x_flat: (batch, L, C). With `directions="miccss"` one shared
Mamba runs on x_flat and on three flips of it: tokens reversed (dim 1), channels reversed (dim 2, as
in the published code) and both; each result is flipped back and the four are averaged. The four
runs are one batched call (concatenated on the batch axis). `directions="forward"` runs x_flat only
(nnMambaEncoder's stem).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from nnmamba.networks.blocks import conv1x1
from nnmamba.ssm.mamba import Mamba

# upstream order of the four terms: original, channel flip, token flip, both
_FLIPS = ((), (2,), (1,), (1, 2))


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
        x_flat = x.reshape(batch, channels, -1).transpose(1, 2)            # (batch, L, C)
        if self.directions == "forward":
            x_mamba = self.mamba(x_flat)
        else:
            x_mamba = self._miccss(x_flat)
        out = x_mamba.transpose(1, 2).reshape(batch, channels, *img_dims)
        out += act_x
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
