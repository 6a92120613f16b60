"""The `torch` scan backend: a chunked selective scan in plain PyTorch (CPU, MPS, CUDA).

The sequence is cut into K chunks of T tokens. Three steps:
1. every chunk is scanned from a zero state, all chunks side by side (a loop over the T positions
   whose every step works on a (batch, d_inner, K, d_state) slab), keeping only each chunk's final
   state;
2. a short loop over the K chunks carries the true state across chunk borders
   (state_in[k+1] = exp(A * sum(delta in chunk k)) * state_in[k] + local_final[k]);
3. every chunk is scanned again from its true start state, this time contracting with C.
Only decays exp(delta * A) <= 1 are ever formed, so large |delta * A| cannot overflow, and the
temporaries are one slab per step, never (L, d_state)-sized. The state is float32 (float64 for
float64 inputs) whatever the input dtype, and autocast is switched off inside.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from nnmamba.ssm.reference_scan import scan_dtype

# Slab of (batch * d_inner * K * d_state) elements one loop step works on: big enough that the
# per-op overhead is small, small enough to stay in cache.
_SLAB_ELEMENTS = 1 << 18


def _chunking(batch: int, d_inner: int, d_state: int, length: int) -> tuple:
    per_chunk = max(1, batch * d_inner * d_state)
    chunks = max(1, min(length, _SLAB_ELEMENTS // per_chunk))
    chunk_len = math.ceil(length / chunks)
    chunks = math.ceil(length / chunk_len)
    return chunks, chunk_len


def selective_scan_torch(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                         C: torch.Tensor, D: Optional[torch.Tensor] = None,
                         z: Optional[torch.Tensor] = None, delta_bias: Optional[torch.Tensor] = None,
                         delta_softplus: bool = False) -> torch.Tensor:
    """Chunked selective scan, same maths as `selective_scan_reference`.

    u, delta, z: (batch, d_inner, L); A: (d_inner, d_state); B, C: (batch, d_state, L);
    D, delta_bias: (d_inner,). Returns y: (batch, d_inner, L) in u's dtype. Differentiable.
    """
    dtype_in = u.dtype
    compute = scan_dtype(dtype_in)
    with torch.autocast(device_type=u.device.type, enabled=False):
        y = _scan(u.to(compute), delta.to(compute), A.to(compute), B.to(compute), C.to(compute),
                  None if delta_bias is None else delta_bias.to(compute), delta_softplus)
        if D is not None:
            y = y + u.to(compute) * D.to(compute)[:, None]
        if z is not None:
            y = y * F.silu(z.to(compute))
    return y.to(dtype_in)


def _scan(u, delta, A, B, C, delta_bias, delta_softplus):
    """y[b, d, t] = sum_n C[b, n, t] h[b, d, n, t] (no D, no gate). Shapes as the public function."""
    batch, d_inner, length = u.shape
    d_state = A.shape[1]
    if length == 0:
        return u.new_zeros(batch, d_inner, 0)
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    du = delta * u
    chunks, chunk_len = _chunking(batch, d_inner, d_state, length)
    pad = chunks * chunk_len - length
    if pad:
        # delta = 0 and input = 0 past the end: decay 1, nothing added; outputs there are dropped
        delta = F.pad(delta, (0, pad))
        du = F.pad(du, (0, pad))
        B = F.pad(B, (0, pad))
        C = F.pad(C, (0, pad))
    # position-major slabs: [t] -> (batch, d_inner, K) or (batch, K, d_state)
    delta_s = delta.view(batch, d_inner, chunks, chunk_len).permute(3, 0, 1, 2)
    du_s = du.view(batch, d_inner, chunks, chunk_len).permute(3, 0, 1, 2)
    B_s = B.view(batch, d_state, chunks, chunk_len).permute(3, 0, 2, 1)
    C_s = C.view(batch, d_state, chunks, chunk_len).permute(3, 0, 2, 1)
    A4 = A[None, :, None, :]                                             # (1, d_inner, 1, d_state)

    # 1. each chunk from a zero state -> its final state
    h = u.new_zeros(batch, d_inner, chunks, d_state)
    for t in range(chunk_len):
        h = torch.exp(delta_s[t][..., None] * A4) * h + du_s[t][..., None] * B_s[t][:, None]
    # 2. carry states across chunk borders
    chunk_decay = torch.exp(delta_s.sum(0)[..., None] * A4)             # (batch, d_inner, K, d_state)
    starts = [u.new_zeros(batch, d_inner, d_state)]
    for k in range(chunks - 1):
        starts.append(chunk_decay[:, :, k] * starts[-1] + h[:, :, k])
    h = torch.stack(starts, dim=2)                                      # (batch, d_inner, K, d_state)
    # 3. each chunk again from its true start, contracting with C
    ys = []
    for t in range(chunk_len):
        h = torch.exp(delta_s[t][..., None] * A4) * h + du_s[t][..., None] * B_s[t][:, None]
        ys.append(torch.einsum("bdkn,bkn->bdk", h, C_s[t]))
    y = torch.stack(ys, dim=-1).reshape(batch, d_inner, chunks * chunk_len)
    return y[..., :length]
