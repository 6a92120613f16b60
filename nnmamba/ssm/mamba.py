"""`Mamba`: the Mamba (v1) block with mamba-ssm's parameter names, on a pluggable scan backend.

Same parameters, initialisation and forward maths as `mamba_ssm.modules.mamba_simple.Mamba`, so its
state_dict loads with strict=True. How the block runs on a device (scan backend, and whether the
backend's declared fused inner function replaces conv1d + projections + scan) is the execution
plan's decision: `nnmamba.inference.plan_application.apply_plan` sets it per device; without an
applied plan the block asks `nnmamba.ssm.backend_choice.block_decision` (the same capability query the
planner uses) once per (device, dtype, mode) on its first forward there and logs the answer
(mode is "training" when autograd records the forward, so "auto" then picks a backend that trains).

Two layouts of the same maths, picked from the backend's declared `layout`: "tokens" keeps every
activation token-major (b, L, channels) and hands the scan transposed views (the torch scan on CPU
is tuned for that); "channels" runs channel-major like mamba-ssm's own block (projections as
matmuls giving (b, channels, L), the causal conv as a depthwise conv1d), so a CUDA kernel gets
unit-stride u, delta, z, B, C and neither it nor autograd copies them.

Example:
    >>> block = Mamba(d_model=16)                 # scan_backend="auto"
    >>> y = block(torch.randn(2, 100, 16))        # (batch, L, d_model) -> same shape
"""

from __future__ import annotations

import logging
import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from nnmamba.errors import PlanError
from nnmamba.ssm import backends
from nnmamba.ssm.backend_choice import block_decision
from nnmamba.ssm.reference_scan import scan_dtype

logger = logging.getLogger(__name__)
_logged = set()


def _log_choice(requested: str, device: torch.device, dtype: torch.dtype, mode: str, name: str,
                why: str) -> None:
    key = (requested, str(device), dtype, mode, name)
    if key not in _logged:
        _logged.add(key)
        logger.info("selective scan on %s for %s in %s: backend %r (%s)", device, mode,
                    str(dtype).replace("torch.", ""), name, why)


def causal_depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """The Mamba block's causal depthwise conv1d, token-major.

    x: (batch, L, channels); weight: (channels, 1, width); bias: (channels,) or None.
    out[t] = bias + sum_k weight[k] * x[t + k - (width - 1)], zeros before the start: what
    Conv1d(groups=channels, padding=width - 1) followed by [..., :L] computes, without the two
    layout copies (and 3-4x faster on CPU than the depthwise conv1d kernel).
    """
    width = weight.shape[-1]
    length = x.shape[1]
    w = weight[:, 0, :].to(x.dtype)                                       # (channels, width)
    out = x * w[:, width - 1]
    if bias is not None:
        out = out + bias.to(x.dtype)
    for k in range(width - 1):
        shift = width - 1 - k
        if shift < length:
            out[:, shift:] += x[:, :length - shift] * w[:, k]
    return out


def channel_linear(weight: torch.Tensor, x: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A Linear applied channel-major: weight (out, in), x (batch, in, L) -> (batch, out, L) contiguous.

    torch.matmul makes one GEMM whatever x's strides (a transposed view of token-major memory too).
    """
    out = torch.matmul(weight, x)
    return out if bias is None else out + bias.to(out.dtype)[:, None]


class Mamba(nn.Module):
    """Mamba v1 block. Input and output: (batch, L, d_model)."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank="auto", dt_min: float = 0.001, dt_max: float = 0.1, dt_init: str = "random",
                 dt_scale: float = 1.0, dt_init_floor: float = 1e-4, conv_bias: bool = True,
                 bias: bool = False, use_fast_path: bool = True, layer_idx: Optional[int] = None,
                 device=None, dtype=None, scan_backend: str = "auto"):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else dt_rank
        self.use_fast_path = use_fast_path
        self.layer_idx = layer_idx

        self.in_proj = nn.Linear(d_model, self.d_inner * 2, bias=bias, **factory)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner,
                                padding=d_conv - 1, bias=conv_bias, **factory)
        self.activation = "silu"
        self.act = nn.SiLU()
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + d_state * 2, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)

        # dt projection initialised so softplus(dt_proj(...)) starts in [dt_min, dt_max]
        dt_init_std = self.dt_rank ** -0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, dt_init_std)
        elif dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
        else:
            raise ValueError(f"dt_init must be 'random' or 'constant', got {dt_init!r}")
        dt = torch.exp(torch.rand(self.d_inner, **factory) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=dt_init_floor)
        inv_dt = dt + torch.log(-torch.expm1(-dt))  # inverse of softplus
        with torch.no_grad():
            self.dt_proj.bias.copy_(inv_dt)
        self.dt_proj.bias._no_reinit = True

        # S4D real initialisation; A_log and D stay float32 like mamba-ssm's
        A = torch.arange(1, d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

        backends.check_backend_name(scan_backend)
        self.scan_backend = scan_backend
        # (device, mode) -> (backend, fused inner) set by an execution plan; wins over _resolved
        self._planned: Dict[Tuple[str, str], Tuple[str, bool]] = {}
        # (device, dtype, mode) -> (backend, fused inner) block_decision gave without an applied plan
        self._resolved: Dict[Tuple[str, torch.dtype, str], Tuple[str, bool]] = {}

    def set_scan_backend(self, name: str) -> None:
        """Ask for another backend ("auto" or a registered name); planned again on next forward."""
        backends.check_backend_name(name)
        self.take_checked_scan_backend(name)

    def take_checked_scan_backend(self, name: str) -> None:
        """`set_scan_backend` for a name the caller has checked (`backends.check_backend_name`):
        `nnmamba.networks` checks a network's backend once, not once per block."""
        self.scan_backend = name
        self._planned = {}
        self._resolved = {}

    def use_plan(self, device, backend: str, fused_inner: bool, mode: str) -> None:
        """Run `mode` forwards on `device` with scan `backend`, through its fused inner function when
        `fused_inner` (and `use_fast_path`); called by `nnmamba.inference.plan_application.apply_plan`, which
        checked both. A training plan serves inference too; an inference plan never serves training
        (its backend may be forward-only), so a training forward then asks `block_decision`."""
        backends.get_backend(backend)
        self._planned[(str(torch.device(device)), mode)] = (backend, bool(fused_inner) and self.use_fast_path)

    def decision(self, device, dtype: torch.dtype = torch.float32, mode: str = "inference") -> Tuple[str, bool]:
        """(backend, fused inner on?) of this block on `device`: the applied plan's, else `block_decision`'s."""
        device = torch.device(device)
        planned = self._planned.get((str(device), mode))
        if planned is None and mode == "inference":
            planned = self._planned.get((str(device), "training"))
        if planned is not None:
            return planned
        key = (str(device), dtype, mode)
        if key not in self._resolved:
            name, fused, why = block_decision(self.scan_backend, device, dtype, mode)
            _log_choice(self.scan_backend, device, dtype, mode, name, why)
            self._resolved[key] = (name, fused and self.use_fast_path)
        return self._resolved[key]

    def resolved_backend(self, device, dtype: torch.dtype = torch.float32, mode: str = "inference") -> str:
        """The scan backend this block uses on `device` (deciding it now if it was not yet)."""
        return self.decision(device, dtype, mode)[0]

    def _forward_decision(self, x: torch.Tensor) -> Tuple[str, bool]:
        device_type = x.device.type
        dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else x.dtype
        records = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters()))
        return self.decision(x.device, dtype, "training" if records else "inference")

    def backend_for(self, x: torch.Tensor) -> str:
        """The scan backend a forward on `x` uses (decided from its device, dtype and grad mode)."""
        return self._forward_decision(x)[0]

    def channel_major(self, x: torch.Tensor) -> bool:
        """Whether a forward on `x` (its device, dtype and grad mode) runs the unfused channel-major
        path: the decided backend declares layout "channels" and no fused inner function replaces it."""
        name, fused = self._forward_decision(x)
        return not fused and backends.get_backend(name).layout == backends.CHANNELS

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """hidden_states: (batch, L, d_model) -> (batch, L, d_model)."""
        if hidden_states.dim() != 3 or hidden_states.shape[-1] != self.d_model:
            raise ValueError(f"Mamba expects (batch, L, {self.d_model}), got {tuple(hidden_states.shape)}")
        name, fused = self._forward_decision(hidden_states)
        if backends.get_backend(name).layout == backends.CHANNELS:
            # channel-major (b, 2E, L), unit stride in L: what the kernels (and mamba_inner_fn) read
            tokens = hidden_states.transpose(1, 2)                            # (b, D, L) view
            if not fused:
                (w_x, b_x), (w_z, b_z) = self.in_proj_halves()
                y = self.inner_channels(channel_linear(w_x, tokens, b_x), channel_linear(w_z, tokens, b_z), name)
                return channel_linear(self.out_proj.weight, y, self.out_proj.bias).transpose(1, 2)
            xz_channels = channel_linear(self.in_proj.weight, tokens, self.in_proj.bias)
        else:
            # everything stays token-major (b, L, channels): the linear layers want it and the torch
            # scan works in it; the backends get (b, channels, L) views of that memory
            xz = F.linear(hidden_states, self.in_proj.weight, self.in_proj.bias)  # (b, L, 2E)
            xz_channels = xz.transpose(1, 2)
        A = self._state_matrix()
        if fused:
            # the backend's declared fused conv + projections + scan; returns (batch, L, d_model)
            return self._fused_inner(name)(
                xz_channels, self.conv1d.weight, self.conv1d.bias, self.x_proj.weight,
                self.dt_proj.weight, self.out_proj.weight, self.out_proj.bias, A, None, None, self.D.float(),
                delta_bias=self.dt_proj.bias.float(), delta_softplus=True)
        x, z = xz.split(self.d_inner, dim=-1)
        x = self.act(causal_depthwise_conv(x, self.conv1d.weight, self.conv1d.bias))  # (b, L, E)
        x_dbl = F.linear(x, self.x_proj.weight)                             # (b, L, R + 2N)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight)                              # (b, L, E)
        keep = scan_dtype(x.dtype)
        y = backends.get_backend(name).fn(
            x.transpose(1, 2), dt.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2),
            self.D.to(keep), z=z.transpose(1, 2), delta_bias=self.dt_proj.bias.to(keep),
            delta_softplus=True)                                            # (b, E, L)
        return self.out_proj(y.transpose(1, 2))

    def in_proj_halves(self):
        """in_proj's (weight, bias) for x and for z: rows [:E] and [E:] (bias None without one)."""
        w, b = self.in_proj.weight, self.in_proj.bias
        e = self.d_inner
        return (w[:e], None if b is None else b[:e]), (w[e:], None if b is None else b[e:])

    def inner_channels(self, x: torch.Tensor, z: torch.Tensor, name: str) -> torch.Tensor:
        """Channel-major conv1d + projections + scan on backend `name`, without out_proj.

        x, z: (batch, d_inner, L), in_proj's two halves, unit stride in L -> y: (batch, d_inner, L).
        Taking them apart (two matmuls, not one split) keeps x contiguous for cuDNN's conv1d and
        spares autograd the concatenation of their gradients.
        """
        length = x.shape[-1]
        x = F.conv1d(x, self.conv1d.weight, self.conv1d.bias, padding=self.d_conv - 1, groups=self.d_inner)
        x = self.act(x[..., :length])                                       # (b, E, L) contiguous
        x_dbl = channel_linear(self.x_proj.weight, x)                       # (b, R + 2N, L)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=1)
        dt = channel_linear(self.dt_proj.weight, dt)                        # (b, E, L)
        keep = scan_dtype(x.dtype)
        A = self._state_matrix()
        return backends.get_backend(name).fn(
            x, dt, A, B, C, self.D.to(keep), z=z, delta_bias=self.dt_proj.bias.to(keep), delta_softplus=True)

    def _state_matrix(self) -> torch.Tensor:
        """A = -exp(A_log): (d_inner, d_state), float32 as in mamba-ssm; a float64 model keeps it
        float64 (see docs/engine.md)."""
        return -torch.exp(self.A_log.to(scan_dtype(self.A_log.dtype)))

    @staticmethod
    def _fused_inner(name: str):
        form = backends.get_backend(name).fused_inner
        fn = None if form is None else form.load()
        if fn is None:  # the plan checked it; only a changed environment gets here
            why = "it offers none" if form is None else form.missing()
            raise PlanError(f"the plan runs scan backend {name!r} through its fused inner function, which is not "
                            f"usable: {why}. Make a new plan (make_plan) or pass fused_inner=False.")
        return fn
