"""The `triton` scan backend: mamba-ssm's `selective_scan_fn`, forward and backward, written in Triton.

Runs with the Triton that PyTorch's CUDA wheels ship, so it needs no CUDA compiler; "auto" picks it
on CUDA when mamba-ssm is absent. Triton is imported lazily: on a machine without it (CPU wheels of
PyTorch) the backend registers as unavailable and says why. Kernels: `_triton_scan_kernels`
(forward) and `_triton_scan_backward_kernels`; under TRITON_INTERPRET=1 they run on CPU tensors,
which is how CPU CI checks them.

Besides the registry function this module holds `miccss_scans`, the four scans of one MICCSS layer
(shared Mamba, flips of the token and channel order) in two launches, used by
`nnmamba.inference.fast_path`.

Example:
    >>> y = selective_scan_triton(u, delta, A, B, C, D, z=z, delta_bias=bias, delta_softplus=True)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Optional

import torch

from nnmamba.ssm.backends import register_cuda_backend
from nnmamba.ssm.triton_configs import KernelConfig, config_for_device

INSTALL_HINT = "install a CUDA build of PyTorch (it ships Triton), e.g. pip install torch --index-url " \
               "https://download.pytorch.org/whl/cu128"
# Launch configurations come from the per-GPU-family table of `triton_configs` (chosen ahead on the
# cards: no autotuning at run time). These module-level values override one field of it for every
# device when not None: for sweeps (benchmarks/gpu.py, benchmarks/scan_gpu.py) and interpreter tests.
# BLOCK_L / NUM_WARPS: plain scan; MICCSS_*: the fused MICCSS scans; TRAIN_BLOCK_L: the backward's
# chunk and the spacing of the states the training forward saves; TRAIN_FORWARD_BLOCK_L: the
# training forward's chunk (a multiple of TRAIN_BLOCK_L); BACKWARD_*: the backward kernel.
BLOCK_L = None
NUM_WARPS = None
MICCSS_BLOCK_L = None
MICCSS_NUM_WARPS = None
TRAIN_BLOCK_L = None
TRAIN_FORWARD_BLOCK_L = None
BACKWARD_NUM_WARPS = None
BACKWARD_REVERSED_LOADS = None
_OVERRIDES = (("block_l", "BLOCK_L"), ("num_warps", "NUM_WARPS"), ("miccss_block_l", "MICCSS_BLOCK_L"),
              ("miccss_num_warps", "MICCSS_NUM_WARPS"), ("train_block_l", "TRAIN_BLOCK_L"),
              ("train_forward_block_l", "TRAIN_FORWARD_BLOCK_L"), ("backward_num_warps", "BACKWARD_NUM_WARPS"),
              ("backward_reversed_loads", "BACKWARD_REVERSED_LOADS"))
# Read by the execution planner: this backend's result carries gradients of every input.
SUPPORTS_BACKWARD = True


@functools.lru_cache(maxsize=1)
def _import_error() -> Optional[str]:
    """None when Triton and our kernels import, else why not."""
    try:
        import triton  # noqa: F401

        from nnmamba.ssm import _triton_scan_backward_kernels, _triton_scan_kernels  # noqa: F401
    except Exception as e:  # ImportError, or a Triton too old for associative_scan
        return f"{type(e).__name__}: {e}"
    return None


def _kernels():
    error = _import_error()
    if error is not None:
        raise RuntimeError(f"the triton scan backend is not usable: {error}; fix: {INSTALL_HINT}")
    from nnmamba.ssm import _triton_scan_kernels

    return _triton_scan_kernels


def _backward_kernels():
    _kernels()
    from nnmamba.ssm import _triton_scan_backward_kernels

    return _triton_scan_backward_kernels


def interpreting() -> bool:
    """True when Triton runs our kernels in its CPU interpreter (TRITON_INTERPRET=1 when they were
    imported); then, and only then, the kernels take CPU tensors."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_kernels().selective_scan_kernel, InterpretedFunction)


def kernel_config(device: torch.device) -> KernelConfig:
    """The launch configuration on `device`: its GPU family's (`triton_configs`), with this module's
    overrides applied."""
    config = config_for_device(str(device))
    overrides = {field: globals()[name] for field, name in _OVERRIDES if globals()[name] is not None}
    return dataclasses.replace(config, **overrides) if overrides else config


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _on_device(t: torch.Tensor):
    # launches go to the tensor's GPU; a CPU tensor only reaches here under TRITON_INTERPRET=1
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _unit_stride(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _check_shapes(u, delta, A, B, C, D, z, delta_bias) -> None:
    if u.dim() != 3:
        raise ValueError(f"u must be (batch, d_inner, L), got shape {tuple(u.shape)}")
    batch, dim, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"delta must have u's shape {tuple(u.shape)}, got {tuple(delta.shape)}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"A must be (d_inner={dim}, d_state), got {tuple(A.shape)}")
    state = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.shape != (batch, state, length):
            raise ValueError(f"{name} must be (batch, d_state, L) = {(batch, state, length)} "
                             f"(the triton backend takes input-dependent {name} only), got {tuple(t.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z must have u's shape {tuple(u.shape)}, got {tuple(z.shape)}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (dim,):
            raise ValueError(f"{name} must be (d_inner,) = ({dim},), got {tuple(t.shape)}")
    tensors = [t for t in (u, delta, A, B, C, D, z, delta_bias) if t is not None]
    on_cpu_interpreted = u.device.type == "cpu" and interpreting()
    if any(t.device != u.device for t in tensors) or (u.device.type != "cuda" and not on_cpu_interpreted):
        raise ValueError("the triton scan needs every tensor on one CUDA device (CPU tensors only under "
                         f"TRITON_INTERPRET=1), got {sorted({str(t.device) for t in tensors})}")


def selective_scan_triton(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                          C: torch.Tensor, D: Optional[torch.Tensor] = None,
                          z: Optional[torch.Tensor] = None, delta_bias: Optional[torch.Tensor] = None,
                          delta_softplus: bool = False) -> torch.Tensor:
    """Selective scan on CUDA, state and arithmetic in float32 (like mamba-ssm's kernel). Differentiable.

    u, delta, z: (batch, d_inner, L); A: (d_inner, d_state); B, C: (batch, d_state, L);
    D, delta_bias: (d_inner,). Returns y: (batch, d_inner, L) in u's dtype. When gradients are
    needed the forward pass also saves the float32 state at every chunk start,
    (batch, d_inner, cdiv(L, TRAIN_BLOCK_L), d_state), and the backward kernel recomputes the rest.
    """
    kernels = _kernels()
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        return _TritonScan.apply(*inputs, bool(delta_softplus))
    return _forward(kernels, *inputs, bool(delta_softplus), save_states=False)[0]


def _forward(kernels, u, delta, A, B, C, D, z, delta_bias, softplus: bool, save_states: bool):
    """(y, states, ungated); when save_states, for the backward pass: states (batch, d_inner,
    cdiv(L, TRAIN_BLOCK_L), d_state) and, when z is given, ungated (batch, d_inner, L), y before the
    z gate, both float32; else (y, None, None)."""
    batch, dim, length = u.shape
    u, delta, B, C = (_unit_stride(t) for t in (u, delta, B, C))
    z = None if z is None else _unit_stride(z)
    out = torch.empty_like(u, memory_format=torch.contiguous_format)
    state = A.shape[1]
    config = kernel_config(u.device)
    save_l = config.train_block_l
    block_l = config.train_forward_block_l if save_states else config.block_l
    if save_states and block_l % save_l:
        raise ValueError(f"TRAIN_FORWARD_BLOCK_L must be a multiple of TRAIN_BLOCK_L, got {block_l} and "
                         f"{save_l}")
    states = ungated = None
    if save_states:
        states = torch.empty((batch, dim, triton_cdiv(length, save_l), state), device=u.device,
                             dtype=torch.float32)
        if z is not None:
            ungated = torch.empty(out.shape, device=u.device, dtype=torch.float32)
    if length == 0 or batch == 0:
        return out, states, ungated
    dummy = out  # stands in for absent optional pointers; never read (HAS_* is False)
    zz = z if z is not None else dummy
    with _on_device(u):
        kernels.selective_scan_kernel[(batch * dim,)](
            u, delta, A, B, C, D if D is not None else dummy, zz,
            delta_bias if delta_bias is not None else dummy, out, states if save_states else dummy,
            ungated if ungated is not None else dummy,
            length, dim,
            u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), A.stride(0), A.stride(1),
            B.stride(0), B.stride(1), C.stride(0), C.stride(1), zz.stride(0), zz.stride(1),
            out.stride(0), out.stride(1),
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            SOFTPLUS=softplus, SAVE_STATES=save_states, SAVE_L=save_l if save_states else block_l,
            N=state, N_PAD=_next_pow2(state), BLOCK_L=block_l, num_warps=config.num_warps,
        )
    return out, states, ungated


class _TritonScan(torch.autograd.Function):
    """Forward kernel saving chunk-start states; backward kernel recomputing states per chunk.

    Gradients follow mamba-ssm's selective_scan_fn: each in its input's dtype, accumulated in
    float32 (dA, dD, d(delta_bias) summed over batch and L; dB, dC summed over channels).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus):
        # the unit-stride copies are what gets saved, so backward does not copy again (as mamba-ssm)
        u, delta, B, C = (_unit_stride(t) for t in (u, delta, B, C))
        z = None if z is None else _unit_stride(z)
        out, states, ungated = _forward(_kernels(), u, delta, A, B, C, D, z, delta_bias, softplus,
                                        save_states=True)
        ctx.softplus = softplus
        ctx.block_l = kernel_config(u.device).train_block_l  # the states' spacing, whatever it is at backward time
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states, ungated)
        return out

    @staticmethod
    def backward(ctx, dout):
        u, delta, A, B, C, D, z, delta_bias, states, ungated = ctx.saved_tensors
        grads = _backward(_backward_kernels(), dout, u, delta, A, B, C, D, z, delta_bias, states, ungated,
                          ctx.softplus, ctx.block_l)
        needed = ctx.needs_input_grad
        return tuple(g if need else None for g, need in zip(grads, needed[:8])) + (None,)


def _backward(kernels, dout, u, delta, A, B, C, D, z, delta_bias, states, ungated, softplus: bool,
              block_l: int):
    """(du, ddelta, dA, dB, dC, dD, dz, d_delta_bias), None for absent inputs; shapes as the inputs."""
    batch, dim, length = u.shape
    state = A.shape[1]
    dout = _unit_stride(dout)  # the inputs are _TritonScan.forward's saved unit-stride tensors
    du = torch.empty_like(u, memory_format=torch.contiguous_format)
    ddelta = torch.empty_like(delta, memory_format=torch.contiguous_format)
    dz = None if z is None else torch.empty_like(z, memory_format=torch.contiguous_format)
    f32 = dict(device=u.device, dtype=torch.float32)
    dB = torch.zeros((batch, state, length), **f32)
    dC = torch.zeros((batch, state, length), **f32)
    dA = torch.zeros((batch, dim, state), **f32)
    dD = torch.zeros((batch, dim), **f32)
    dbias = torch.zeros((batch, dim), **f32)
    config = kernel_config(u.device)
    if length > 0 and batch > 0:
        if dout.stride() != du.stride():
            dout = dout.contiguous()  # the kernel indexes dout with du's (batch, channel) strides
        zz = z if z is not None else du
        with _on_device(u):
            kernels.selective_scan_backward_kernel[(batch * dim,)](
                u, delta, A, B, C, D if D is not None else du, zz,
                delta_bias if delta_bias is not None else du, states,
                ungated if ungated is not None else du, dout,
                du, ddelta, dz if dz is not None else du, dB, dC, dA, dD, dbias,
                length, dim,
                u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), A.stride(0), A.stride(1),
                B.stride(0), B.stride(1), C.stride(0), C.stride(1), zz.stride(0), zz.stride(1),
                du.stride(0), du.stride(1),
                HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
                SOFTPLUS=softplus, N=state, N_PAD=_next_pow2(state), BLOCK_L=block_l,
                REVERSED_LOADS=config.backward_reversed_loads, num_warps=config.backward_num_warps,
            )
    return (du, ddelta, dA.sum(0).to(A.dtype), dB.to(B.dtype), dC.to(C.dtype),
            None if D is None else dD.sum(0).to(D.dtype), dz,
            None if delta_bias is None else dbias.sum(0).to(delta_bias.dtype))


def miccss_scans(xz: torch.Tensor, conv_weight: torch.Tensor, conv_bias: torch.Tensor,
                 x_proj_weight: torch.Tensor, dt_proj_weight: torch.Tensor, dt_proj_bias: torch.Tensor,
                 A: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """The four scans of a MICCSS layer, for both channel orders and both token directions.

    xz: (batch, 2, 2*d_inner, L): in_proj of the tokens for the channel order as given (v = 0) and
    reversed (v = 1), x in rows [0, d_inner), z in rows [d_inner, 2*d_inner).
    conv_weight: (d_inner, d_conv); conv_bias, dt_proj_bias, D: (d_inner,); A: (d_inner, d_state);
    x_proj_weight: (dt_rank + 2*d_state, d_inner); dt_proj_weight: (d_inner, dt_rank).
    Returns y: (batch, 4, d_inner, L), stream 2*v + r; r = 1 is the scan of the flipped token order,
    already flipped back. Summing out_proj over the streams gives 4x MICCSS's mamba average.
    """
    kernels = _kernels()
    batch, variants, two_dim, length = xz.shape
    dim = two_dim // 2
    if variants != 2 or two_dim != 2 * dim or xz.stride(-1) != 1:
        raise ValueError(f"xz must be (batch, 2, 2*d_inner, L) with unit stride along L, "
                         f"got shape {tuple(xz.shape)} strides {xz.stride()}")
    state = A.shape[1]
    rank = dt_proj_weight.shape[1]
    u = torch.empty((batch, 4, dim, length), device=xz.device, dtype=xz.dtype)
    config = kernel_config(xz.device)
    with _on_device(xz):
        conv_block = config.conv_block_l
        kernels.miccss_conv_kernel[(batch * 2 * dim, triton_cdiv(length, conv_block))](
            xz, conv_weight, conv_bias, u, length, dim,
            xz.stride(0), xz.stride(1), xz.stride(2), conv_weight.stride(0), conv_weight.stride(1),
            u.stride(0), u.stride(1), u.stride(2),
            K=conv_weight.shape[1], BLOCK_L=conv_block, num_warps=config.conv_num_warps,
        )
        x_dbl = torch.matmul(x_proj_weight, u)  # (batch, 4, rank + 2N, L)
        out = torch.empty_like(u)
        kernels.miccss_scan_kernel[(batch * 4 * dim,)](
            u, x_dbl, dt_proj_weight, dt_proj_bias, A, D, xz, out,
            length, dim, rank,
            u.stride(0), u.stride(1), u.stride(2), x_dbl.stride(0), x_dbl.stride(1), x_dbl.stride(2),
            dt_proj_weight.stride(0), dt_proj_weight.stride(1), A.stride(0), A.stride(1),
            xz.stride(0), xz.stride(1), xz.stride(2), out.stride(0), out.stride(1), out.stride(2),
            N=state, N_PAD=_next_pow2(state), R_PAD=_next_pow2(rank), BLOCK_L=config.miccss_block_l,
            num_warps=config.miccss_num_warps,
        )
    return out


def upsample2x_trilinear(x: torch.Tensor) -> torch.Tensor:
    """x: (batch, C, D, H, W) -> (batch, C, 2D, 2H, 2W) in x's memory format; equals
    F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False) (float32 arithmetic)."""
    kernels = _kernels()
    if x.dim() != 5:
        raise ValueError(f"x must be (batch, C, D, H, W), got shape {tuple(x.shape)}")
    batch, channels, depth, height, width = x.shape
    layout = (torch.channels_last_3d if x.is_contiguous(memory_format=torch.channels_last_3d)
              and not x.is_contiguous() else torch.contiguous_format)
    out = torch.empty((batch, channels, 2 * depth, 2 * height, 2 * width), device=x.device, dtype=x.dtype,
                      memory_format=layout)
    if out.numel() == 0:
        return out
    channels_last = layout == torch.channels_last_3d
    if channels_last:
        block_w, block_c = 32, min(_next_pow2(channels), 64)
        grid = (batch * 2 * depth * 2 * height, triton_cdiv(2 * width, block_w), triton_cdiv(channels, block_c))
        blocks = dict(BLOCK_A=block_w, BLOCK_B=block_c)
    else:
        block_h, block_w = 4, min(_next_pow2(2 * width), 128)
        grid = (batch * channels * 2 * depth, triton_cdiv(2 * height, block_h), triton_cdiv(2 * width, block_w))
        blocks = dict(BLOCK_A=block_h, BLOCK_B=block_w)
    with _on_device(x):
        kernels.upsample2x_trilinear_kernel[grid](
            x, out, channels, depth, height, width, *x.stride(), *out.stride(),
            CHANNELS_LAST=channels_last, num_warps=4, **blocks)
    return out


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _supports_backward() -> bool:
    # read at planning time, so a changed SUPPORTS_BACKWARD (a test's monkeypatch) is seen
    return bool(SUPPORTS_BACKWARD)


register_cuda_backend("triton", selective_scan_triton, _import_error, "the Triton scan", INSTALL_HINT,
                      supports_grad=_supports_backward, speed_rank=20)
