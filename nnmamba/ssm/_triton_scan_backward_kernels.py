"""Triton kernel of the selective scan's backward pass. Imported only by `triton_scan`.

Per (batch, channel) the forward recurrence and its adjoint are

    h_t = a_t * h_{t-1} + dt_t * B_t * u_t,       a_t = exp(dt_t * A)
    g_t = C_t * dy_t + a_{t+1} * g_{t+1}          (g_t = dLoss/dh_t, g_{L} = 0 past the end)

so the backward walks the chunks from the last to the first, carrying a_s * g_s of the first
token s of the chunk just done. In each chunk it recomputes h_{t-1} from the state the forward pass
saved at the chunk's start (one forward `tl.associative_scan`, exclusive) and h_t = a_t h_{t-1} +
dt_t B_t u_t from it, then solves the adjoint with a scan of (a_{t+1}, C_t dy_t) pairs in reversed
token order, the same combine as the forward. The pairs of the previous and of the next token come
from second, shifted loads (rows of BLOCK_L values, cache-hot) rather than from shuffling register
tiles. Every decay is exp(dt * A) <= 1 and dA's a_t * h_{t-1} is a product of the two, so huge
|delta * A| gives zeros, never inf or nan, and no digits lost to cancellation.
"""

import triton
import triton.language as tl

from nnmamba.ssm._triton_scan_kernels import LOG2_E, _combine, _softplus


@triton.jit
def _delta(dt_row, offs_l, mask_l, dt_bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """delta as the scan uses it (bias added, softplus applied; 0 where masked) and
    d(delta used)/d(delta given), both (BLOCK_L,)."""
    raw = tl.load(dt_row + offs_l, mask=mask_l, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw = raw + dt_bias
    if SOFTPLUS:
        dt = _softplus(raw)
        slope = tl.where(raw <= 20.0, tl.sigmoid(raw), 1.0)
    else:
        dt = raw
        slope = tl.full(raw.shape, 1.0, tl.float32)
    return tl.where(mask_l, dt, 0.0), slope


@triton.jit
def _gated_grad(dout_row, z_row, offs_l, mask_l, HAS_Z: tl.constexpr):
    """d(loss)/d(output before the z gate): dout * silu(z), (BLOCK_L,) float32."""
    dy = tl.load(dout_row + offs_l, mask=mask_l, other=0.0).to(tl.float32)
    if HAS_Z:
        z = tl.load(z_row + offs_l, mask=mask_l, other=0.0).to(tl.float32)
        dy = dy * z * tl.sigmoid(z)
    return dy


@triton.jit
def _states_before(u_row, dt_row, b_base, h_start, a2, dt_bias, offs_l, mask_n, seqlen,
                   HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, BLOCK_L: tl.constexpr):
    """h_{t-1} for every token t of the chunk: (N, BLOCK_L), from h_start: (N,), the state before it.

    An exclusive scan: the forward pairs (a_{t-1}, dt_{t-1} B_{t-1} u_{t-1}) of the previous token
    (loaded again one token back, cache-hot; the chunk's first token gets (1, 0)). The caller then
    takes a_t * h_{t-1} as a product of two accurate factors, where h_t - dt_t B_t u_t would cancel
    digits whenever a_t is tiny but not 0 (dA off by ~7e-4 at |delta * A| ~ 6000).
    """
    cols = tl.arange(0, BLOCK_L)
    offs_prev = offs_l - 1
    mask_prev = (cols > 0) & (offs_prev < seqlen)
    dt_prev, _ = _delta(dt_row, offs_prev, mask_prev, dt_bias, HAS_BIAS, SOFTPLUS)
    u_prev = tl.load(u_row + offs_prev, mask=mask_prev, other=0.0).to(tl.float32)
    b_prev = tl.load(b_base + offs_prev[None, :], mask=mask_n[:, None] & mask_prev[None, :],
                     other=0.0).to(tl.float32)
    decay_prev = tl.exp2(a2[:, None] * dt_prev[None, :])
    acc_a, acc_h = tl.associative_scan((decay_prev, b_prev * (dt_prev * u_prev)[None, :]), axis=1,
                                       combine_fn=_combine)
    return acc_h + acc_a * h_start[:, None]


@triton.jit
def _adjoint(dt_row, dout_row, z_row, c_base, c_t, dy, carry, a2, dt_bias, offs_l, mask_n, seqlen,
             HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, BLOCK_L: tl.constexpr,
             REVERSED_LOADS: tl.constexpr):
    """g_t = C_t dy_t + a_{t+1} g_{t+1} over one chunk: (N, BLOCK_L), given carry = a_s g_s of the
    chunk after; c_t: (N, BLOCK_L) and dy: (BLOCK_L,) (gated) in token order.

    The chunk's last token gets decay 1 (its successor's decay is in carry). REVERSED_LOADS: the
    scan's inputs are loaded again in reversed token order (the chunk is in L1), scanned forwards
    and only g is flipped back, because Triton's reverse=True scan costs ~2.5x the shuffles of the
    whole rest of the kernel on sm_90 (benchmarks/triton_sass.py); else that reverse scan.
    """
    cols = tl.arange(0, BLOCK_L)
    if REVERSED_LOADS:
        offs_rev = offs_l + (BLOCK_L - 1) - 2 * cols
        mask_rev = offs_rev < seqlen
        dt_next, _ = _delta(dt_row, offs_rev + 1, (cols > 0) & (offs_rev + 1 < seqlen), dt_bias, HAS_BIAS,
                            SOFTPLUS)
        dy_rev = _gated_grad(dout_row, z_row, offs_rev, mask_rev, HAS_Z)
        c_rev = tl.load(c_base + offs_rev[None, :], mask=mask_n[:, None] & mask_rev[None, :],
                        other=0.0).to(tl.float32)
        acc_ga, acc_g = tl.associative_scan((tl.exp2(a2[:, None] * dt_next[None, :]), c_rev * dy_rev[None, :]),
                                            axis=1, combine_fn=_combine)
        g = tl.flip(acc_g + acc_ga * carry[:, None], 1)
    else:
        dt_next, _ = _delta(dt_row, offs_l + 1, (cols < BLOCK_L - 1) & (offs_l + 1 < seqlen), dt_bias,
                            HAS_BIAS, SOFTPLUS)
        acc_ga, acc_g = tl.associative_scan((tl.exp2(a2[:, None] * dt_next[None, :]), c_t * dy[None, :]),
                                            axis=1, combine_fn=_combine, reverse=True)
        g = acc_g + acc_ga * carry[:, None]
    return g


@triton.jit
def selective_scan_backward_kernel(
    u_ptr, dt_ptr, a_ptr, b_ptr, c_ptr, d_ptr, z_ptr, bias_ptr, states_ptr, ungated_ptr, dout_ptr,
    du_ptr, ddt_ptr, dz_ptr, db_ptr, dc_ptr, da_ptr, dd_ptr, dbias_ptr,
    seqlen, dim,
    s_ub, s_ud, s_dtb, s_dtd, s_ad, s_an, s_bb, s_bn, s_cb, s_cn, s_zb, s_zd, s_gb, s_gd,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    N: tl.constexpr, N_PAD: tl.constexpr, BLOCK_L: tl.constexpr, REVERSED_LOADS: tl.constexpr,
):
    """Gradients of `selective_scan_kernel`: one program per (batch, channel).

    u, dt, z: (batch, dim, L), dout: (batch, dim, L), all unit stride along L; a: (dim, N);
    b, c: (batch, N, L); from the forward pass: states: (batch, dim, cdiv(L, BLOCK_L), N) and, with
    HAS_Z, ungated: (batch, dim, L) (the output before the z gate, strides as du), both float32.
    Writes du, ddt, dz: (batch, dim, L) contiguous; adds into db, dc: (batch, N, L) contiguous
    float32 (zeroed by the caller; every channel contributes); writes per-batch partials
    da: (batch, dim, N), dd and dbias: (batch, dim), all float32, that the caller sums over batch.

    dB and dC are summed over channels with atomics straight from the (N, BLOCK_L) tile, like
    mamba-ssm's kernel: at batch 4 x d_inner 128 there are only 512 programs for ~132 SMs, so
    giving a program several channels to reduce in registers first would idle SMs, and partial
    sums per channel would be (batch, d_inner, N, L) float32, 1 GiB at L = 32768. "relaxed"
    atomics need no fences; the adds land in L2.
    """
    pid = tl.program_id(0)
    batch = (pid // dim).to(tl.int64)
    chan = (pid % dim).to(tl.int64)
    offs_n = tl.arange(0, N_PAD)
    mask_n = offs_n < N
    cols = tl.arange(0, BLOCK_L)
    a = tl.load(a_ptr + chan * s_ad + offs_n * s_an, mask=mask_n, other=0.0).to(tl.float32)
    a2 = a * LOG2_E
    d_skip = 0.0
    if HAS_D:
        d_skip = tl.load(d_ptr + chan).to(tl.float32)
    dt_bias = 0.0
    if HAS_BIAS:
        dt_bias = tl.load(bias_ptr + chan).to(tl.float32)
    u_row = u_ptr + batch * s_ub + chan * s_ud
    dt_row = dt_ptr + batch * s_dtb + chan * s_dtd
    z_row = z_ptr + batch * s_zb + chan * s_zd
    grad_offset = batch * s_gb + chan * s_gd
    b_base = b_ptr + batch * s_bb + offs_n[:, None] * s_bn
    c_base = c_ptr + batch * s_cb + offs_n[:, None] * s_cn
    bc_grad_base = batch * N * seqlen + offs_n[:, None] * seqlen
    n_chunks = tl.cdiv(seqlen, BLOCK_L)
    state_row = states_ptr + (batch * dim + chan) * n_chunks * N
    carry = tl.zeros((N_PAD,), dtype=tl.float32)  # a_s * g_s, s = first token of the chunk after
    da_acc = tl.zeros((N_PAD, BLOCK_L), dtype=tl.float32)  # reduced over tokens once, at the end
    dd_acc = tl.zeros((BLOCK_L,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_L,), dtype=tl.float32)
    for i in tl.range(0, n_chunks):
        k = n_chunks - 1 - i
        offs_l = k * BLOCK_L + cols
        mask_l = offs_l < seqlen
        mask_nl = mask_n[:, None] & mask_l[None, :]
        u = tl.load(u_row + offs_l, mask=mask_l, other=0.0).to(tl.float32)
        dt, slope = _delta(dt_row, offs_l, mask_l, dt_bias, HAS_BIAS, SOFTPLUS)
        offs_tile = tl.max_contiguous(offs_l, 4)  # one register layout for 16- and 32-bit inputs
        b_t = tl.load(b_base + offs_tile[None, :], mask=mask_nl, other=0.0).to(tl.float32)
        c_t = tl.load(c_base + offs_tile[None, :], mask=mask_nl, other=0.0).to(tl.float32)
        h_start = tl.load(state_row + k * N + offs_n, mask=mask_n, other=0.0)
        decay = tl.exp2(a2[:, None] * dt[None, :])
        h_prev = _states_before(u_row, dt_row, b_base, h_start, a2, dt_bias, offs_l, mask_n, seqlen,
                                HAS_BIAS, SOFTPLUS, BLOCK_L)
        decayed_prev = decay * h_prev  # a_t * h_{t-1}
        h = decayed_prev + b_t * (dt * u)[None, :]
        dy = tl.load(dout_ptr + grad_offset + offs_l, mask=mask_l, other=0.0).to(tl.float32)
        if HAS_Z:
            z = tl.load(z_row + offs_l, mask=mask_l, other=0.0).to(tl.float32)
            gate = tl.sigmoid(z)
            y = tl.load(ungated_ptr + grad_offset + offs_l, mask=mask_l, other=0.0)
            dz = dy * y * gate * (1.0 + z * (1.0 - gate))
            tl.store(dz_ptr + grad_offset + offs_l, dz.to(dz_ptr.dtype.element_ty), mask=mask_l)
            dy = dy * z * gate
        if HAS_D:
            dd_acc += dy * u
        tl.atomic_add(dc_ptr + bc_grad_base + offs_l[None, :], h * dy[None, :], mask=mask_nl, sem="relaxed")
        g = _adjoint(dt_row, dout_ptr + grad_offset, z_row, c_base, c_t, dy, carry, a2, dt_bias, offs_l,
                     mask_n, seqlen, HAS_Z, HAS_BIAS, SOFTPLUS, BLOCK_L, REVERSED_LOADS)
        carry = tl.sum(tl.where((cols == 0)[None, :], decay * g, 0.0), axis=1)
        tl.atomic_add(db_ptr + bc_grad_base + offs_l[None, :], g * (dt * u)[None, :], mask=mask_nl,
                      sem="relaxed")
        g_b = tl.sum(g * b_t, axis=0)
        g_decayed = g * decayed_prev
        da_acc += g_decayed * dt[None, :]
        ddt = (u * g_b + tl.sum(g_decayed * a[:, None], axis=0)) * slope
        ddt = tl.where(mask_l, ddt, 0.0)
        dbias_acc += ddt
        tl.store(du_ptr + grad_offset + offs_l, (dt * g_b + d_skip * dy).to(du_ptr.dtype.element_ty), mask=mask_l)
        tl.store(ddt_ptr + grad_offset + offs_l, ddt.to(ddt_ptr.dtype.element_ty), mask=mask_l)
    tl.store(da_ptr + (batch * dim + chan) * N + offs_n, tl.sum(da_acc, axis=1), mask=mask_n)
    if HAS_D:
        tl.store(dd_ptr + batch * dim + chan, tl.sum(dd_acc, axis=0))
    if HAS_BIAS:
        tl.store(dbias_ptr + batch * dim + chan, tl.sum(dbias_acc, axis=0))
