"""The `torch` scan backend: a chunked selective scan in plain PyTorch (CPU, MPS, CUDA).

The sequence is cut into K chunks of T tokens, laid out position-major so that step t of every
chunk is one contiguous (batch, K, d_inner, d_state) slab. Forward:
1. every chunk is scanned from a zero state, all K chunks side by side (a loop over the T
   positions), keeping only each chunk's final state;
2. a loop over the K chunks carries the true state across chunk borders
   (start[k+1] = exp(A * sum(delta in chunk k)) * start[k] + local_final[k]);
3. every chunk is scanned again from its true start, contracting with C at each step.
Only decays exp(delta * A) <= 1 are formed, so large |delta * A| cannot overflow (a log-space
cumsum scan would), and nothing of size (L, d_state) is kept: temporaries are slabs.

Backward is a custom autograd function with the same chunking: the gradient of the state runs
the recurrence in reverse (g[t] = C[t] dy[t] + exp(delta[t+1] A) g[t+1]); the states h[t] are
recomputed from the chunk start states saved by the forward pass, a group of chunks at a time.
So training memory is O(batch * d_inner * L) plus bounded groups, not one saved tensor per step.

The state is float32 (float64 for float64 inputs) whatever the input dtype; autocast is off inside.

That is the CPU policy (`CACHE_POLICY`). On GPUs its hundreds of loop steps per chunk cost one
launch per op and per step, so other devices use `LEVELS_POLICY`: few, large ops in a hierarchical
scan over materialised groups of states (`nnmamba.ssm.hierarchical_scan`). `policy_for(device)`
picks; `selective_scan_torch(..., policy=...)` forces one (how tests run the GPU path on CPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from nnmamba.ssm.hierarchical_scan import _LOG2_E, HierarchicalScan, hierarchical_forward
from nnmamba.ssm.reference_scan import scan_dtype

# Elements of one (batch, K, d_inner, d_state) slab a loop step works on: big enough that the
# per-op overhead is small next to the arithmetic.
_SLAB_ELEMENTS = 1 << 18
# Longest chunk when a backward pass will follow; bounds what it keeps per group of chunks.
_MAX_CHUNK = 256
# Elements of recomputed states (and of decays) the backward pass holds at once.
_GROUP_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class ScanPolicy:
    """How the torch backend cuts a scan.

    levels=False: the CPU layout (slabs of `_SLAB_ELEMENTS`, a sequential carry over chunks).
    levels=True: the hierarchical scan; `chunk` tokens per level, at most `group_elements`
    state elements per materialised tensor (the forward holds two such tensors, the backward three).
    """

    levels: bool
    chunk: int = 8
    group_elements: int = 1 << 27


CACHE_POLICY = ScanPolicy(levels=False)
# chunk 8: the fewest ops at the MICCSS lengths L = 512 .. 32768 (4 .. 64 were counted);
# 2^27 elements = 512 MiB per float32 state-sized tensor
LEVELS_POLICY = ScanPolicy(levels=True, chunk=8, group_elements=1 << 27)


def policy_for(device: torch.device) -> ScanPolicy:
    """CPU: the cache-tuned layout; any other device (CUDA, MPS): few large ops."""
    return CACHE_POLICY if torch.device(device).type == "cpu" else LEVELS_POLICY


def selective_scan_torch(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                         C: torch.Tensor, D: Optional[torch.Tensor] = None,
                         z: Optional[torch.Tensor] = None, delta_bias: Optional[torch.Tensor] = None,
                         delta_softplus: bool = False, *, policy: Optional[ScanPolicy] = None) -> torch.Tensor:
    """Chunked selective scan, same maths as `selective_scan_reference`. Differentiable.

    u, delta, z: (batch, d_inner, L); A: (d_inner, d_state); B, C: (batch, d_state, L);
    D, delta_bias: (d_inner,). Returns y: (batch, d_inner, L) in u's dtype, as a transposed view
    of (batch, L, d_inner) memory (what the Mamba block's out_proj wants). `policy`: None picks
    `policy_for(u.device)`.
    """
    if policy is None:
        policy = policy_for(u.device)
    dtype_in = u.dtype
    compute = scan_dtype(dtype_in)
    with torch.autocast(device_type=u.device.type, enabled=False):
        # token-major (batch, L, m) views: free for the Mamba block's delta, z, B and C
        u_t = u.to(compute).transpose(1, 2)
        delta_t = delta.to(compute).transpose(1, 2)
        if delta_bias is not None:
            delta_t = delta_t + delta_bias.to(compute)
        if delta_softplus:
            delta_t = F.softplus(delta_t)
        args = (u_t, delta_t, A.to(compute), B.to(compute).transpose(1, 2), C.to(compute).transpose(1, 2))
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in args)
        if policy.levels and needs_grad:
            y_t = HierarchicalScan.apply(*args, policy.chunk, policy.group_elements)
        elif policy.levels:
            y_t = hierarchical_forward(*args, policy.chunk, policy.group_elements)
        elif needs_grad:
            y_t = _ChunkedScan.apply(*args)
        else:
            y_t = _forward(*args)[0]
        if D is not None:
            y_t = torch.addcmul(y_t, u_t, D.to(compute))
        if z is not None:
            y_t = y_t * F.silu(z.to(compute).transpose(1, 2))
    return y_t.to(dtype_in).transpose(1, 2)


class _Layout:
    """Chunking of one call: K chunks of T tokens, token-major views (batch, K, T, m)."""

    def __init__(self, batch: int, d_inner: int, d_state: int, length: int, for_backward: bool):
        per_chunk = max(1, batch * d_inner * d_state)
        chunks = max(1, min(length, _SLAB_ELEMENTS // per_chunk))
        if for_backward:
            chunks = max(chunks, math.ceil(length / _MAX_CHUNK))
        self.T = max(1, math.ceil(length / chunks))
        self.K = math.ceil(length / self.T)
        self.length = length
        self.batch, self.d_inner, self.d_state = batch, d_inner, d_state

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, L, m) -> (batch, K, T, m), zero-padded past L (a copy only if x is not
        contiguous or L is not a multiple of T)."""
        pad = self.K * self.T - self.length
        x = F.pad(x, (0, 0, 0, pad)) if pad else x.contiguous()
        return x.view(self.batch, self.K, self.T, x.shape[-1])

    def steps(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, L, m) -> (T, batch, K, m): step t of every chunk is one contiguous block."""
        return self.split(x).permute(2, 0, 1, 3).contiguous()

    def join(self, x: torch.Tensor) -> torch.Tensor:
        """(T, batch, K, m) -> (batch, L, m)."""
        x = x.permute(1, 2, 0, 3).reshape(self.batch, self.K * self.T, x.shape[-1])
        return x[:, :self.length]


# The state is kept as (batch, K, d_state, d_inner): d_inner innermost, so every elementwise op
# broadcasts over a contiguous 128-wide row and vectorises.

def _forward(u, delta, A, B, C, for_backward=False):
    """y (batch, L, d_inner) without D and gate, plus the chunk start states backward needs.
    u, delta: (batch, L, d_inner); B, C: (batch, L, d_state); A: (d_inner, d_state)."""
    batch, length, d_inner = u.shape
    d_state = A.shape[1]
    lay = _Layout(batch, d_inner, d_state, length, for_backward)
    if length == 0:
        return u.new_zeros(batch, 0, d_inner), None, lay
    A2 = (A * _LOG2_E).t().contiguous()               # (n, d); exp(delta A) == exp2(delta A2), faster
    ds = lay.split(delta).unsqueeze(3)                # (b, K, T, 1, d)
    us = lay.split(delta * u).unsqueeze(3)            # (b, K, T, 1, d): delta * u
    Bs = lay.split(B).unsqueeze(-1)                   # (b, K, T, n, 1)
    Cs = lay.steps(C).unsqueeze(-2)                   # (T, b, K, 1, n)
    h = u.new_zeros(batch, lay.K, d_state, d_inner)
    decay = torch.empty_like(h)
    # 1. each chunk from a zero state
    for t in range(lay.T):
        torch.mul(ds[:, :, t], A2, out=decay).exp2_()
        h.mul_(decay).addcmul_(us[:, :, t], Bs[:, :, t])
    # 2. true start state of every chunk
    starts = _carry_forward(h, torch.exp2(ds.sum(2) * A2))
    # 3. each chunk from its true start, contracting with C
    h = starts.clone()
    ys = u.new_empty(lay.T, batch, lay.K, 1, d_inner)
    for t in range(lay.T):
        torch.mul(ds[:, :, t], A2, out=decay).exp2_()
        h.mul_(decay).addcmul_(us[:, :, t], Bs[:, :, t])
        torch.matmul(Cs[t], h, out=ys[t])
    return lay.join(ys.squeeze(3)), starts, lay


def _carry_forward(local_final: torch.Tensor, chunk_decay: torch.Tensor) -> torch.Tensor:
    """Start states (b, K, n, d) from each chunk's zero-start final state and total decay."""
    starts = torch.empty_like(local_final)
    state = torch.zeros_like(local_final[:, 0])
    for k in range(local_final.shape[1]):
        starts[:, k] = state
        state = torch.addcmul(local_final[:, k], chunk_decay[:, k], state)
    return starts


class _ChunkedScan(torch.autograd.Function):
    """y = scan(u, delta, A, B, C) (delta already biased and softplus-ed; no D, no gate)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C):
        y, starts, lay = _forward(u, delta, A, B, C, for_backward=True)
        ctx.save_for_backward(u, delta, A, B, C, starts)
        ctx.layout = lay
        return y

    @staticmethod
    def backward(ctx, dy):
        u, delta, A, B, C, starts = ctx.saved_tensors
        lay = ctx.layout
        if lay.length == 0:
            return torch.zeros_like(u), torch.zeros_like(delta), torch.zeros_like(A), \
                torch.zeros_like(B), torch.zeros_like(C)
        return _backward(dy.to(u.dtype), u, delta, A, B, C, starts, lay)


def _backward(dy, u, delta, A, B, C, starts, lay):
    """Gradients of sum(dy * y) for u, delta, A, B, C (token-major, shapes as the inputs).

    With h[t] = a[t] h[t-1] + x[t], a[t] = exp(delta[t] A), x[t] = delta[t] u[t] B[t] and
    y[t] = C[t] . h[t], the state gradient g[t] = dy[t] C[t] + a[t+1] g[t+1] runs backwards; then
    dC[t] = sum_d dy[t] h[t], d(delta u)[t] = sum_n g[t] B[t], dB[t] = sum_d g[t] delta[t] u[t],
    and through the decay d(delta[t] A) = g[t] a[t] h[t-1].
    """
    T, K = lay.T, lay.K
    batch, d_inner, d_state = lay.batch, lay.d_inner, lay.d_state
    AT = A.t().contiguous()                           # (n, d)
    A2 = AT * _LOG2_E
    ds = lay.split(delta).unsqueeze(3)                # (b, K, T, 1, d)
    us = lay.split(delta * u).unsqueeze(3)
    dys = lay.split(dy).unsqueeze(3)
    B_split, C_split = lay.split(B), lay.split(C)     # (b, K, T, n)

    # 1. reverse scan of every chunk from a zero gradient at its end -> gradient at its start
    g = u.new_zeros(batch, K, d_state, d_inner)
    decay = torch.empty_like(g)
    for t in reversed(range(T)):
        if t < T - 1:
            torch.mul(ds[:, :, t + 1], A2, out=decay).exp2_()
            g.mul_(decay)
        g.addcmul_(dys[:, :, t], C_split[:, :, t].unsqueeze(-1))
    # 2. gradient flowing into each chunk's last position from the chunks after it
    first_decay = torch.exp2(ds[:, :, 0] * A2)        # decay at each chunk's first position
    chunk_decay = torch.exp2(ds.sum(2) * A2)
    incoming = torch.zeros_like(g)
    for k in range(K - 1, 0, -1):
        incoming[:, k - 1] = first_decay[:, k] * g[:, k] + chunk_decay[:, k] * incoming[:, k]

    # 3. per group of chunks: recompute states, run the reverse recurrence, collect gradients
    d_du = u.new_empty(T, batch, K, 1, d_inner)       # d(delta * u)
    d_delta = u.new_empty(T, batch, K, d_inner)       # through the decays
    dB = u.new_empty(T, batch, K, d_state, 1)
    dC = u.new_empty(T, batch, K, d_state, 1)
    dAT = torch.zeros_like(AT)
    group = max(1, _GROUP_ELEMENTS // (T * batch * d_inner * d_state))
    for k0 in range(0, K, group):
        sl = slice(k0, min(K, k0 + group))
        hs = u.new_empty(T, batch, sl.stop - k0, d_state, d_inner)
        decays = torch.empty_like(hs)
        h = starts[:, sl]
        for t in range(T):
            torch.mul(ds[:, sl, t], A2, out=decays[t]).exp2_()
            x = us[:, sl, t] * B_split[:, sl, t].unsqueeze(-1)
            h = torch.addcmul(x, decays[t], h, out=hs[t])
        g = incoming[:, sl].clone()
        q = torch.empty_like(g)
        for t in reversed(range(T)):
            if t < T - 1:
                g.mul_(decays[t + 1])
            g.addcmul_(dys[:, sl, t], C_split[:, sl, t].unsqueeze(-1))
            torch.matmul(hs[t], dys[:, sl, t].transpose(-1, -2), out=dC[t, :, sl])
            torch.matmul(B_split[:, sl, t].unsqueeze(-2), g, out=d_du[t, :, sl])
            torch.matmul(g, us[:, sl, t].transpose(-1, -2), out=dB[t, :, sl])
            # d/d(delta * A) of h[t] = decay[t] * h[t-1] + ...  is  g * decay[t] * h[t-1]
            prev = hs[t - 1] if t > 0 else starts[:, sl]
            torch.mul(g, decays[t], out=q).mul_(prev)
            d_delta[t, :, sl] = (q * AT).sum(-2)
            dAT.add_((q * ds[:, sl, t]).sum((0, 1)))
    d_du = lay.join(d_du.squeeze(3))
    d_delta = lay.join(d_delta) + d_du * u
    return d_du * delta, d_delta, dAT.t(), lay.join(dB.squeeze(-1)), lay.join(dC.squeeze(-1))
