"""Triton kernels of the selective scan. Imported only by `triton_scan` once Triton is known to import.

Every kernel walks the sequence in chunks of BLOCK_L tokens with the state h: (N,) of one channel
carried between chunks in registers (float32). Inside a chunk the linear recurrence

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t

is solved for all tokens at once by `tl.associative_scan` over (a, b) pairs with the combine
(a1, b1) o (a2, b2) = (a1 * a2, a2 * b1 + b2); the carried state enters as h_t += (prod a) * h_in.
Positions past the end of the sequence get delta = 0 and u = 0, i.e. a = 1 and b = 0, so the last
column of a chunk is always the state after the last real token.
"""

import triton
import triton.language as tl

LOG2_E = tl.constexpr(1.4426950408889634)


@triton.jit
def _combine(a1, b1, a2, b2):
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _softplus(x):
    # mamba-ssm's threshold: softplus(x) == x in float32 for x > 20.
    return tl.where(x <= 20.0, tl.log(1.0 + tl.exp(x)), x)


@triton.jit
def _scan_chunk(h, dt, u, a2, b_t, c_t, BLOCK_L: tl.constexpr, SAVE_STATES: tl.constexpr,
                state_row, first, n_saved, offs_n, mask_n, N: tl.constexpr, SAVE_L: tl.constexpr):
    """One chunk of the recurrence.

    h: (N,) state before the chunk; dt, u: (BLOCK_L,); a2: (N,) = A * log2(e);
    b_t, c_t: (N, BLOCK_L). Returns y: (BLOCK_L,) = sum_n C * h and the state after the chunk.
    SAVE_STATES also stores the state before each later SAVE_L-token piece (the chunk's next one
    included) at rows first + 1, first + 2, ... (< n_saved) of state_row: (n_saved, N).
    """
    decay = tl.exp2(a2[:, None] * dt[None, :])
    drive = b_t * (dt * u)[None, :]
    acc_a, acc_h = tl.associative_scan((decay, drive), axis=1, combine_fn=_combine)
    states = acc_h + acc_a * h[:, None]
    y = tl.sum(states * c_t, axis=0)
    cols = tl.arange(0, BLOCK_L)
    if SAVE_STATES:
        # the state after column j starts piece (j + 1) / SAVE_L: stored by the thread that holds it,
        # a masked scatter instead of a cross-thread reduction per piece
        piece = first + (cols + 1) // SAVE_L
        keep = ((cols + 1) % SAVE_L == 0) & (piece < n_saved)
        tl.store(state_row + piece[None, :] * N + offs_n[:, None], states, mask=mask_n[:, None] & keep[None, :])
    h_out = tl.sum(tl.where((cols == BLOCK_L - 1)[None, :], states, 0.0), axis=1)
    return y, h_out


@triton.jit
def selective_scan_kernel(
    u_ptr, dt_ptr, a_ptr, b_ptr, c_ptr, d_ptr, z_ptr, bias_ptr, out_ptr, states_ptr, ungated_ptr,
    seqlen, dim,
    s_ub, s_ud, s_dtb, s_dtd, s_ad, s_an, s_bb, s_bn, s_cb, s_cn, s_zb, s_zd, s_ob, s_od,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    SAVE_STATES: tl.constexpr, SAVE_L: tl.constexpr, N: tl.constexpr, N_PAD: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """mamba-ssm's selective_scan_fn, forward: one program per (batch, channel).

    u, dt, z, out: (batch, dim, L) with unit stride along L; a: (dim, N); b, c: (batch, N, L).
    SAVE_STATES (for the backward pass) stores the state before every SAVE_L tokens (BLOCK_L is a
    multiple of SAVE_L) into states: (batch, dim, cdiv(L, SAVE_L), N), contiguous float32, and with
    HAS_Z the output before the z gate into ungated: float32 with out's strides; without it neither
    is touched.
    """
    pid = tl.program_id(0)
    batch = (pid // dim).to(tl.int64)
    chan = (pid % dim).to(tl.int64)
    offs_n = tl.arange(0, N_PAD)
    mask_n = offs_n < N
    a2 = tl.load(a_ptr + chan * s_ad + offs_n * s_an, mask=mask_n, other=0.0).to(tl.float32) * LOG2_E
    if HAS_D:
        d_skip = tl.load(d_ptr + chan).to(tl.float32)
    if HAS_BIAS:
        dt_bias = tl.load(bias_ptr + chan).to(tl.float32)
    u_row = u_ptr + batch * s_ub + chan * s_ud
    dt_row = dt_ptr + batch * s_dtb + chan * s_dtd
    b_base = b_ptr + batch * s_bb + offs_n[:, None] * s_bn
    c_base = c_ptr + batch * s_cb + offs_n[:, None] * s_cn
    z_row = z_ptr + batch * s_zb + chan * s_zd
    out_row = out_ptr + batch * s_ob + chan * s_od
    n_saved = tl.cdiv(seqlen, SAVE_L)
    state_row = states_ptr + (batch * dim + chan) * n_saved * N
    h = tl.zeros((N_PAD,), dtype=tl.float32)
    if SAVE_STATES:
        tl.store(state_row + offs_n, h, mask=mask_n)  # the state before the first piece; _scan_chunk the rest
    for start in tl.range(0, seqlen, BLOCK_L):
        offs_l = start + tl.arange(0, BLOCK_L)
        mask_l = offs_l < seqlen
        mask_nl = mask_n[:, None] & mask_l[None, :]
        u = tl.load(u_row + offs_l, mask=mask_l, other=0.0).to(tl.float32)
        dt = tl.load(dt_row + offs_l, mask=mask_l, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dt = dt + dt_bias
        if SOFTPLUS:
            dt = _softplus(dt)
        dt = tl.where(mask_l, dt, 0.0)
        b_t = tl.load(b_base + offs_l[None, :], mask=mask_nl, other=0.0).to(tl.float32)
        c_t = tl.load(c_base + offs_l[None, :], mask=mask_nl, other=0.0).to(tl.float32)
        y, h = _scan_chunk(h, dt, u, a2, b_t, c_t, BLOCK_L, SAVE_STATES, state_row, start // SAVE_L, n_saved,
                           offs_n, mask_n, N, SAVE_L)
        if HAS_D:
            y = y + d_skip * u
        if HAS_Z:
            if SAVE_STATES:
                tl.store(ungated_ptr + batch * s_ob + chan * s_od + offs_l, y, mask=mask_l)
            z = tl.load(z_row + offs_l, mask=mask_l, other=0.0).to(tl.float32)
            y = y * z * tl.sigmoid(z)
        tl.store(out_row + offs_l, y.to(out_ptr.dtype.element_ty), mask=mask_l)


@triton.jit
def miccss_conv_kernel(
    xz_ptr, w_ptr, bias_ptr, u_ptr,
    seqlen, dim,
    s_xb, s_xv, s_xd, s_wd, s_wk, s_ub, s_us, s_ud,
    K: tl.constexpr, BLOCK_L: tl.constexpr,
):
    """Depthwise conv1d + bias + SiLU of both scan directions of one channel-order variant.

    xz: (batch, 2 variants, 2*dim, L), the x half in rows [0, dim); w: (dim, K).
    u: (batch, 4 streams, dim, L); stream 2*v is causal (forward scan), 2*v + 1 anti-causal with
    the taps mirrored, which is what a causal conv over the flipped sequence gives once flipped back.
    """
    pid = tl.program_id(0)
    pid_l = tl.program_id(1)
    bv = (pid // dim).to(tl.int64)
    chan = (pid % dim).to(tl.int64)
    batch = bv // 2
    variant = bv % 2
    offs = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    x_row = xz_ptr + batch * s_xb + variant * s_xv + chan * s_xd
    bias = tl.load(bias_ptr + chan).to(tl.float32)
    acc_f = tl.zeros((BLOCK_L,), dtype=tl.float32) + bias
    acc_r = tl.zeros((BLOCK_L,), dtype=tl.float32) + bias
    for k in tl.static_range(K):
        w = tl.load(w_ptr + chan * s_wd + k * s_wk).to(tl.float32)
        pos_f = offs - (K - 1) + k
        x_f = tl.load(x_row + pos_f, mask=(pos_f >= 0) & (pos_f < seqlen), other=0.0).to(tl.float32)
        acc_f += w * x_f
        pos_r = offs + (K - 1) - k
        x_r = tl.load(x_row + pos_r, mask=pos_r < seqlen, other=0.0).to(tl.float32)
        acc_r += w * x_r
    mask = offs < seqlen
    out_f = u_ptr + batch * s_ub + (2 * variant) * s_us + chan * s_ud
    out_dtype = u_ptr.dtype.element_ty
    tl.store(out_f + offs, (acc_f * tl.sigmoid(acc_f)).to(out_dtype), mask=mask)
    tl.store(out_f + s_us + offs, (acc_r * tl.sigmoid(acc_r)).to(out_dtype), mask=mask)


@triton.jit
def _miccss_stream(u_row, x_base, z_row, out_row, seqlen, rank, s_xr, a2, w_dt, dt_bias, d_skip,
                   offs_n, mask_n, offs_r, mask_r,
                   N: tl.constexpr, N_PAD: tl.constexpr, BLOCK_L: tl.constexpr, REVERSE: tl.constexpr):
    """One stream of `miccss_scan_kernel`. REVERSE walks the chunks from the end and scans each
    one backwards (tokens still loaded in ascending, coalesced order)."""
    h = tl.zeros((N_PAD,), dtype=tl.float32)
    for k in tl.range(0, tl.cdiv(seqlen, BLOCK_L)):
        if REVERSE:
            pos = seqlen - (k + 1) * BLOCK_L + tl.arange(0, BLOCK_L)
            mask_l = pos >= 0
        else:
            pos = k * BLOCK_L + tl.arange(0, BLOCK_L)
            mask_l = pos < seqlen
        u = tl.load(u_row + pos, mask=mask_l, other=0.0).to(tl.float32)
        dt_low = tl.load(x_base + offs_r[:, None] * s_xr + pos[None, :],
                         mask=mask_r[:, None] & mask_l[None, :], other=0.0).to(tl.float32)
        dt = _softplus(tl.sum(w_dt[:, None] * dt_low, axis=0) + dt_bias)
        dt = tl.where(mask_l, dt, 0.0)
        mask_nl = mask_n[:, None] & mask_l[None, :]
        b_t = tl.load(x_base + (rank + offs_n)[:, None] * s_xr + pos[None, :],
                      mask=mask_nl, other=0.0).to(tl.float32)
        c_t = tl.load(x_base + (rank + N + offs_n)[:, None] * s_xr + pos[None, :],
                      mask=mask_nl, other=0.0).to(tl.float32)
        decay = tl.exp2(a2[:, None] * dt[None, :])
        drive = b_t * (dt * u)[None, :]
        acc_a, acc_h = tl.associative_scan((decay, drive), axis=1, combine_fn=_combine, reverse=REVERSE)
        states = acc_h + acc_a * h[:, None]
        y = tl.sum(states * c_t, axis=0)
        if REVERSE:
            carry = tl.arange(0, BLOCK_L) == 0
        else:
            carry = tl.arange(0, BLOCK_L) == BLOCK_L - 1
        h = tl.sum(tl.where(carry[None, :], states, 0.0), axis=1)
        z = tl.load(z_row + pos, mask=mask_l, other=0.0).to(tl.float32)
        y = (y + d_skip * u) * z * tl.sigmoid(z)
        tl.store(out_row + pos, y.to(out_row.dtype.element_ty), mask=mask_l)


@triton.jit
def miccss_scan_kernel(
    u_ptr, xdbl_ptr, wdt_ptr, bias_ptr, a_ptr, d_ptr, xz_ptr, out_ptr,
    seqlen, dim, rank,
    s_ub, s_us, s_ud, s_xb, s_xs, s_xr, s_wd, s_wr, s_ad, s_an,
    s_zb, s_zv, s_zd, s_ob, s_os, s_od,
    N: tl.constexpr, N_PAD: tl.constexpr, R_PAD: tl.constexpr, BLOCK_L: tl.constexpr,
):
    """The four MICCSS scans of one shared Mamba in one launch, dt_proj and softplus fused in.

    u: (batch, 4, dim, L) from `miccss_conv_kernel`; xdbl: (batch, 4, rank + 2N, L) = x_proj(u);
    wdt: (dim, rank); xz: (batch, 2, 2*dim, L), z in rows [dim, 2*dim); out: (batch, 4, dim, L).
    Stream s = 2*v + r scans forward (r = 0) or from the end (r = 1); its z is variant v's.
    """
    pid = tl.program_id(0)
    bs = (pid // dim).to(tl.int64)
    chan = (pid % dim).to(tl.int64)
    batch = bs // 4
    stream = bs % 4
    variant = stream // 2
    offs_n = tl.arange(0, N_PAD)
    mask_n = offs_n < N
    offs_r = tl.arange(0, R_PAD)
    mask_r = offs_r < rank
    a2 = tl.load(a_ptr + chan * s_ad + offs_n * s_an, mask=mask_n, other=0.0).to(tl.float32) * LOG2_E
    w_dt = tl.load(wdt_ptr + chan * s_wd + offs_r * s_wr, mask=mask_r, other=0.0).to(tl.float32)
    dt_bias = tl.load(bias_ptr + chan).to(tl.float32)
    d_skip = tl.load(d_ptr + chan).to(tl.float32)
    u_row = u_ptr + batch * s_ub + stream * s_us + chan * s_ud
    x_base = xdbl_ptr + batch * s_xb + stream * s_xs
    z_row = xz_ptr + batch * s_zb + variant * s_zv + (dim + chan) * s_zd
    out_row = out_ptr + batch * s_ob + stream * s_os + chan * s_od
    if stream % 2 == 0:
        _miccss_stream(u_row, x_base, z_row, out_row, seqlen, rank, s_xr, a2, w_dt, dt_bias, d_skip,
                       offs_n, mask_n, offs_r, mask_r, N, N_PAD, BLOCK_L, False)
    else:
        _miccss_stream(u_row, x_base, z_row, out_row, seqlen, rank, s_xr, a2, w_dt, dt_bias, d_skip,
                       offs_n, mask_n, offs_r, mask_r, N, N_PAD, BLOCK_L, True)


@triton.jit
def _source(o, n):
    """Trilinear x2, align_corners=False: the two source indices of output index o (scalar or
    vector) and the weight of the second; PyTorch clamps the source coordinate 0.5 * o - 0.25 at 0."""
    src = tl.maximum(o.to(tl.float32) * 0.5 - 0.25, 0.0)
    i0 = src.to(tl.int32)
    lam = src - i0.to(tl.float32)
    i1 = tl.minimum(i0 + 1, n - 1)
    return i0, i1, lam


@triton.jit
def upsample2x_trilinear_kernel(x_ptr, out_ptr, channels, depth, height, width,
                                s_n, s_c, s_d, s_h, s_w, o_n, o_c, o_d, o_h, o_w,
                                CHANNELS_LAST: tl.constexpr, BLOCK_A: tl.constexpr, BLOCK_B: tl.constexpr):
    """out (N, C, 2D, 2H, 2W) = trilinear x2 upsampling of x (strided, same layout).

    Channels-first: program (n*C*2D + c*2D + od, oh block, ow block), tile (oh, ow).
    Channels-last: program (n*2D*2H + od*2H + oh, ow block, c block), tile (ow, c), so each corner
    load reads whole channel vectors.
    """
    pid = tl.program_id(0)
    if CHANNELS_LAST:
        oh = pid % (2 * height)
        rest = pid // (2 * height)
        od = rest % (2 * depth)
        batch = (rest // (2 * depth)).to(tl.int64)
        ow = tl.program_id(1) * BLOCK_A + tl.arange(0, BLOCK_A)
        chan = tl.program_id(2) * BLOCK_B + tl.arange(0, BLOCK_B)
        mask = (ow < 2 * width)[:, None] & (chan < channels)[None, :]
        h0, h1, lh = _source(oh, height)
        w0, w1, lw = _source(ow, width)
        w0, w1, lw = w0[:, None], w1[:, None], lw[:, None]
        chan_src = chan[None, :] * s_c
        chan_dst = chan[None, :] * o_c
        dest = out_ptr + batch * o_n + od * o_d + oh * o_h + ow[:, None] * o_w + chan_dst
    else:
        od = pid % (2 * depth)
        rest = pid // (2 * depth)
        chan = rest % channels
        batch = (rest // channels).to(tl.int64)
        oh = tl.program_id(1) * BLOCK_A + tl.arange(0, BLOCK_A)
        ow = tl.program_id(2) * BLOCK_B + tl.arange(0, BLOCK_B)
        mask = (oh < 2 * height)[:, None] & (ow < 2 * width)[None, :]
        h0, h1, lh = _source(oh, height)
        w0, w1, lw = _source(ow, width)
        h0, h1, lh = h0[:, None], h1[:, None], lh[:, None]
        w0, w1, lw = w0[None, :], w1[None, :], lw[None, :]
        chan_src = chan.to(tl.int64) * s_c
        chan_dst = chan.to(tl.int64) * o_c
        dest = out_ptr + batch * o_n + chan_dst + od * o_d + oh[:, None] * o_h + ow[None, :] * o_w
    d0, d1, ld = _source(od, depth)
    base = x_ptr + batch * s_n + chan_src
    acc = tl.zeros((BLOCK_A, BLOCK_B), dtype=tl.float32)
    for corner in tl.static_range(8):
        dd = d1 if (corner // 4) % 2 else d0
        hh = h1 if (corner // 2) % 2 else h0
        ww = w1 if corner % 2 else w0
        wd = ld if (corner // 4) % 2 else 1.0 - ld
        wh = lh if (corner // 2) % 2 else 1.0 - lh
        wwt = lw if corner % 2 else 1.0 - lw
        v = tl.load(base + dd * s_d + hh * s_h + ww * s_w, mask=mask, other=0.0).to(tl.float32)
        acc += (wd * wh * wwt) * v
    tl.store(dest, acc.to(out_ptr.dtype.element_ty), mask=mask)
