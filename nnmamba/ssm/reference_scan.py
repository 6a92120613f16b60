"""The `reference` scan backend: the plain sequential recurrence, one token at a time (the oracle).

It is written to be obviously correct, not fast: one loop step per token over (batch, d_inner,
d_state) tensors. Inputs are transposed once to token-major layout so each step reads contiguous
memory. Float64 inputs are computed in float64, everything else in float32.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def scan_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a scan computes in for inputs of `dtype`: float64 stays float64, the rest is float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def selective_scan_reference(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                             C: torch.Tensor, D: Optional[torch.Tensor] = None,
                             z: Optional[torch.Tensor] = None, delta_bias: Optional[torch.Tensor] = None,
                             delta_softplus: bool = False) -> torch.Tensor:
    """Sequential selective scan.

    u, delta, z: (batch, d_inner, L); A: (d_inner, d_state); B, C: (batch, d_state, L);
    D, delta_bias: (d_inner,). Returns y: (batch, d_inner, L) in u's dtype.
    """
    with torch.autocast(device_type=u.device.type, enabled=False):  # the einsum must not downcast
        return _scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def _scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    dtype_in = u.dtype
    compute = scan_dtype(dtype_in)
    u = u.to(compute)
    delta = delta.to(compute)
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    A = A.to(compute)
    batch, d_inner, length = u.shape
    # token-major copies: step t reads one contiguous slice
    delta_t = delta.permute(2, 0, 1).contiguous()            # (L, batch, d_inner)
    du_t = (delta * u).permute(2, 0, 1).contiguous()         # (L, batch, d_inner)
    B_t = B.to(compute).permute(2, 0, 1).contiguous()        # (L, batch, d_state)
    C_t = C.to(compute).permute(2, 0, 1).contiguous()        # (L, batch, d_state)
    h = u.new_zeros(batch, d_inner, A.shape[1])
    ys = []
    for t in range(length):
        decay = torch.exp(delta_t[t, :, :, None] * A)        # (batch, d_inner, d_state)
        h = decay * h + du_t[t, :, :, None] * B_t[t, :, None, :]
        ys.append(torch.einsum("bdn,bn->bd", h, C_t[t]))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, d_inner, 0)
    if D is not None:
        y = y + u * D.to(compute)[:, None]
    if z is not None:
        y = y * F.silu(z.to(compute))
    return y.to(dtype_in)
