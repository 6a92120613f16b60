"""The `torch` scan backend's GPU path: a hierarchical chunked scan made of few, large ops.

On a GPU every eager PyTorch op costs a launch (several microseconds) whatever its size, so the
CPU path's loops of hundreds of steps over cache-sized slabs are launch-bound there (over half a
million ops for one layer-1 MICCSS scan's forward+backward). Here the states of a group of
channels, (batch, L, d_state, d_inner), are materialised and the linear recurrence

    h[t] = exp(s[t] A) * h[t-1] + x[t]            (s >= 0: delta, or sums of delta)

is solved in place by levels (`scan_states_`):
1. L is cut into K chunks of T tokens; the decays of all tokens are formed in one op, then a loop
   over the T positions, each step one op over all K chunks, scans every chunk from a zero state;
2. the states at the chunk edges obey the same recurrence one level up (s = the chunk's summed s,
   x = its local end state), solved by the same routine on K tokens, down to a plain loop of <= T;
3. one op adds each chunk's true start state, decayed by exp(A * prefix sum of s), to its local
   states.
So a scan takes about (T + 10) log_T(L) ops instead of ~3 L / K + K. Decays are only ever formed as
exp2(s * A log2 e) with s >= 0 and A <= 0, so each (and each product) is <= 1: no overflow for
huge |delta A|, unlike a log-space cumsum scan.

The backward recomputes the states per group, runs the state gradient's recurrence
g[t] = exp(delta[t+1] A) g[t+1] + dy[t] C[t] with the same routine in reverse, and forms every
gradient as one op over the group. Memory: a group has at most `group_elements` elements per
state-sized tensor, of which the forward holds two (states, decays) and the backward three
(states, gradients, decays); the forward saves only its inputs. Contractions over d_state/d_inner
are matmuls, so they follow torch's float32 matmul precision setting (full float32 unless a
caller lowered it, e.g. to TF32).
"""

from __future__ import annotations

from typing import Iterator, Tuple

import torch
import torch.nn.functional as F

_LOG2_E = 1.4426950408889634


def scan_states_(x: torch.Tensor, s: torch.Tensor, A2: torch.Tensor, chunk: int,
                 reverse: bool = False) -> torch.Tensor:
    """Solve the linear recurrence in place and return x, now holding the states.

    x: (b, L, n, d) the inputs x[t]; s: (b, L, d) >= 0; A2: (n, d) <= 0, A * log2(e).
    Forward: h[t] = exp2(s[t] A2) h[t-1] + x[t] from h[-1] = 0. Reverse: h[t] = exp2(s[t] A2)
    h[t+1] + x[t] from h[L] = 0. L must be at most `chunk` or a multiple of it. Holds one
    temporary the size of x (the decays).
    """
    length = x.shape[1]
    if length <= chunk:
        return _scan_along_(x, _decay(s, A2, out=torch.empty_like(x)), 1, reverse)
    if length % chunk:
        raise ValueError(f"scan_states_ needs L <= chunk or a multiple of it, got L={length}, chunk={chunk}")
    T, K = chunk, length // chunk
    xs, ss = x.unflatten(1, (K, T)), s.unflatten(1, (K, T))      # (b, K, T, n, d), (b, K, T, d)
    # 1. every chunk from a zero state
    decay = _decay(ss, A2, out=torch.empty_like(xs))
    _scan_along_(xs, decay, 2, reverse)
    # 2. the true state at every chunk's edge (where its state accumulates): the same recurrence
    # over chunks, with the chunk's summed s
    edge = 0 if reverse else T - 1
    edges = _padded(xs[:, :, edge], chunk)
    scan_states_(edges, _padded(ss.sum(2), chunk), A2, chunk, reverse)
    # 3. the neighbouring chunk's edge state, decayed to each other position, joins the local
    # states (K >= 2 here); reach = s summed from the chunk border to the position
    into, source = (slice(0, K - 1), slice(1, K)) if reverse else (slice(1, K), slice(0, K - 1))
    inner = slice(1, T) if reverse else slice(0, T - 1)
    reach = ss.flip(2).cumsum(2).flip(2) if reverse else ss.cumsum(2)
    part = _decay(reach[:, into, inner], A2, out=decay[:, into, inner])
    xs[:, into, inner].addcmul_(part, edges[:, source].unsqueeze(2))
    xs[:, :, edge].copy_(edges[:, :K])
    return x


def _scan_along_(x, decay, dim, reverse):
    """x[t] += decay[t] * x[t -/+ 1] along `dim`, one op per position (the sequential part)."""
    length = x.shape[dim]
    order = range(length - 2, -1, -1) if reverse else range(1, length)
    step = 1 if reverse else -1
    for t in order:
        x.select(dim, t).addcmul_(decay.select(dim, t), x.select(dim, t + step))
    return x


def _decay(s: torch.Tensor, A2: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out = exp2(s * A2) <= 1; s: (..., d) >= 0, A2: (n, d) <= 0, out: (..., n, d)."""
    return torch.mul(s.unsqueeze(-2), A2, out=out).exp2_()


def _padded(x: torch.Tensor, chunk: int) -> torch.Tensor:
    """A fresh copy of x (b, K, ...), zero-padded on dim 1 to a multiple of `chunk` when K > chunk."""
    length = x.shape[1]
    out = x.new_zeros(x.shape[0], padded_length(length, chunk), *x.shape[2:])
    out[:, :length] = x
    return out


def padded_length(length: int, chunk: int) -> int:
    """L rounded up to what `scan_states_` takes: itself when <= chunk, else a multiple of chunk."""
    return length if length <= chunk else -(-length // chunk) * chunk


def channel_groups(batch: int, d_inner: int, per_channel: int, group_elements: int
                   ) -> Iterator[Tuple[slice, slice]]:
    """(batch slice, d_inner slice) pairs covering all channels, each holding at most
    `group_elements` state elements (at least one channel) when one channel has `per_channel`."""
    per_batch = max(1, per_channel * d_inner)
    if per_batch <= group_elements:
        step = group_elements // per_batch
        for b0 in range(0, batch, step):
            yield slice(b0, min(batch, b0 + step)), slice(0, d_inner)
        return
    step = max(1, group_elements // per_channel)
    for b0 in range(batch):
        for d0 in range(0, d_inner, step):
            yield slice(b0, b0 + 1), slice(d0, min(d_inner, d0 + step))


class _Padded:
    """One call's token-major inputs padded on L (zeros: no input, decay 1), plus A2 = (A log2 e)^T.

    u, delta: (b, L, d); A: (d, n); B, C: (b, L, n)."""

    def __init__(self, u, delta, A, B, C, chunk):
        self.batch, self.length, self.d_inner = u.shape
        self.d_state = A.shape[1]
        self.full = padded_length(self.length, chunk)
        pad = self.full - self.length

        def fit(t):
            return F.pad(t, (0, 0, 0, pad)) if pad else t

        self.u, self.delta, self.B, self.C = fit(u), fit(delta), fit(B), fit(C)
        self.du = self.delta * self.u
        self.AT = A.t()                                   # (n, d)
        self.A2 = self.AT * _LOG2_E

    def groups(self, group_elements):
        return channel_groups(self.batch, self.d_inner, self.full * self.d_state, group_elements)

    def states(self, b, d, chunk):
        """h: (bg, L', n, dg) of the channels in group (b, d)."""
        x = self.du[b, :, d].unsqueeze(-2) * self.B[b].unsqueeze(-1)
        return scan_states_(x, self.delta[b, :, d], self.A2[:, d], chunk)


def hierarchical_forward(u, delta, A, B, C, chunk: int, group_elements: int) -> torch.Tensor:
    """y = sum_n C[t] h[t] (no D, no gate; delta already biased and softplus-ed).

    u, delta: (b, L, d); A: (d, n); B, C: (b, L, n). Returns y: (b, L, d)."""
    _check_policy(chunk, group_elements)
    p = _Padded(u, delta, A, B, C, chunk)
    y = u.new_zeros(p.batch, p.full, p.d_inner)
    for b, d in p.groups(group_elements):
        h = p.states(b, d, chunk)
        y[b, :, d] = torch.matmul(p.C[b].unsqueeze(-2), h).squeeze(-2)
    return y[:, :p.length]


def hierarchical_backward(dy, u, delta, A, B, C, chunk: int, group_elements: int):
    """Gradients of sum(dy * y) for u, delta, A, B, C (shapes as the inputs; dy like u).

    g[t] = dy[t] C[t] + exp(delta[t+1] A) g[t+1] is the state gradient; then dC[t] = h[t] dy[t],
    d(delta u)[t] = B[t] g[t], dB[t] = g[t] (delta u)[t], and through the decays, with
    q[t] = g[t] exp(delta[t] A) h[t-1]: d delta[t] += sum_n q[t] A, dA = sum_{b,t} q[t] delta[t].
    """
    _check_policy(chunk, group_elements)
    if u.shape[1] == 0:
        return (torch.zeros_like(u), torch.zeros_like(delta), torch.zeros_like(A), torch.zeros_like(B),
                torch.zeros_like(C))
    p = _Padded(u, delta, A, B, C, chunk)
    dy = F.pad(dy, (0, 0, 0, p.full - p.length)) if p.full > p.length else dy
    delta_next = F.pad(p.delta[:, 1:], (0, 0, 0, 1))      # decay from t+1 back to t
    d_du = torch.empty_like(p.u)
    d_delta = torch.empty_like(p.u)
    dA = torch.zeros_like(A)
    dB = torch.zeros_like(p.B)
    dC = torch.zeros_like(p.C)
    for b, d in p.groups(group_elements):
        h = p.states(b, d, chunk)                                            # (bg, L, n, dg)
        dy_g = dy[b, :, d]
        dC[b] += torch.matmul(h, dy_g.unsqueeze(-1)).squeeze(-1)
        g = dy_g.unsqueeze(-2) * p.C[b].unsqueeze(-1)
        scan_states_(g, delta_next[b, :, d], p.A2[:, d], chunk, reverse=True)
        d_du[b, :, d] = torch.matmul(p.B[b].unsqueeze(-2), g).squeeze(-2)
        dB[b] += torch.matmul(g, p.du[b, :, d].unsqueeze(-1)).squeeze(-1)
        q = g                                                                # g is not needed again
        q[:, 1:].mul_(h[:, :-1])
        q[:, 0].zero_()                                                      # h[-1] = 0
        scratch = _decay(p.delta[b, :, d], p.A2[:, d], out=h)               # h is not needed again
        q.mul_(scratch)
        dA[d] += torch.mul(q, p.delta[b, :, d].unsqueeze(-2), out=scratch).sum((0, 1)).t()
        d_delta[b, :, d] = torch.mul(q, p.AT[:, d], out=scratch).sum(-2)
    d_delta = d_delta + d_du * p.u
    n = p.length
    return (d_du * p.delta)[:, :n], d_delta[:, :n], dA, dB[:, :n], dC[:, :n]


class HierarchicalScan(torch.autograd.Function):
    """y = hierarchical_forward(u, delta, A, B, C) with `hierarchical_backward` as its gradient;
    saves only the inputs (the backward recomputes the states group by group)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, chunk, group_elements):
        ctx.save_for_backward(u, delta, A, B, C)
        ctx.policy = (chunk, group_elements)
        return hierarchical_forward(u, delta, A, B, C, chunk, group_elements)

    @staticmethod
    def backward(ctx, dy):
        u, delta, A, B, C = ctx.saved_tensors
        grads = hierarchical_backward(dy.to(u.dtype), u, delta, A, B, C, *ctx.policy)
        return (*grads, None, None)


def _check_policy(chunk, group_elements):
    if chunk < 2:
        raise ValueError(f"chunk must be >= 2, got {chunk}")
    if group_elements < 1:
        raise ValueError(f"group_elements must be >= 1, got {group_elements}")
