"""Registry of selective-scan backends: name -> function with mamba-ssm's `selective_scan_fn` signature.

Every backend computes, for each batch b, channel d and state n, the recurrence

    h[t] = exp(delta[t] * A) * h[t-1] + delta[t] * B[t] * u[t]
    y[t] = sum_n C[t] * h[t] + D * u[t],   then   y *= silu(z)   (when z is given)

with `fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False) -> y` and shapes
u, delta, z: (batch, d_inner, L); A: (d_inner, d_state); B, C: (batch, d_state, L);
D, delta_bias: (d_inner,); y: like u.

Adding a backend is one line (in the backend's own module, imported from `_OPTIONAL_MODULES`):

    register_backend("triton", selective_scan_triton, is_available=triton_available)

Each backend *declares* what it can do: the device types and dtypes it computes in, whether its
result carries gradients (`supports_grad`), a speed rank (lower is faster, from
benchmarks/RESULTS.md), the fused forms it offers (`fused_inner`: mamba-ssm's `mamba_inner_fn`) and
the memory layout it wants its inputs in (`layout`): "tokens" (u = a (b, channels, L) transposed view
of token-major (b, L, channels) memory: torch and reference, tuned for it on CPU) or "channels"
(unit-stride (b, channels, L) tensors: the CUDA kernels, which would otherwise copy them).
`ScanBackend.declare(device)` turns that into plain data (`Declaration`), from which
`nnmamba.ssm.backend_choice` chooses; nothing outside the registry special-cases a backend by name.

Resolution (`backend_choice.resolve_backend`): a name asked for explicitly wins; "auto"
looks at the environment variable NNMAMBA_SCAN_BACKEND first, then picks the fastest backend that
can run. A backend asked for by name that cannot run raises `BackendUnavailableError`; it never
silently falls back to another one.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch

from nnmamba.errors import BackendUnavailableError

logger = logging.getLogger(__name__)

ENV_VAR = "NNMAMBA_SCAN_BACKEND"
AUTO = "auto"
# What each dtype set covers: everything torch computes in, and what the CUDA kernels take.
ALL_FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# The input layouts a backend can declare (see the module docstring).
TOKENS, CHANNELS = "tokens", "channels"
LAYOUTS = (TOKENS, CHANNELS)
# Backends that live in optional modules; each registers itself when imported.
_OPTIONAL_MODULES = ("nnmamba.ssm.mamba_ssm_scan", "nnmamba.ssm.triton_scan")

ScanFn = Callable[..., torch.Tensor]
DeviceLike = Union[str, torch.device]


def _yes() -> bool:
    return True


@dataclass(frozen=True)
class FusedForm:
    """A fused alternative to the whole Mamba inner computation (conv1d, projections and scan).

    `load()` returns the function, or None when the package it needs is missing; `missing()` then
    says why and how to fix it. The function takes mamba-ssm's `mamba_inner_fn` arguments.
    """

    name: str
    load: Callable[[], Optional[Callable]]
    missing: Callable[[], str]


@dataclass(frozen=True)
class Declaration:
    """What one backend declares about itself on one device: plain data the planner chooses from.

    `fused_inner` is None when the backend offers no fused inner function, True when it offers one
    that loads here, False when its package is missing (`fused_inner_why_not` says why).
    """

    name: str
    available: bool
    why_not: str
    device_types: Optional[Tuple[str, ...]]
    dtypes: Tuple[torch.dtype, ...]
    supports_grad: bool
    speed_rank: int
    fused_inner: Optional[bool] = None
    fused_inner_why_not: str = ""
    layout: str = TOKENS


@dataclass(frozen=True)
class ScanBackend:
    """One registered backend and what it declares it can do.

    `is_available(device) -> bool`; `unavailable_reason(device) -> str` explains a False in plain
    words including the fix (e.g. "pip install nnmamba[cuda]"). `has_grad()` is a callable because
    a backend may learn its backward at import time of its module (triton's SUPPORTS_BACKWARD).
    """

    name: str
    fn: ScanFn
    is_available: Callable[[torch.device], bool]
    unavailable_reason: Optional[Callable[[torch.device], str]] = None
    device_types: Optional[Tuple[str, ...]] = None   # None: any device type
    dtypes: Tuple[torch.dtype, ...] = ALL_FLOAT_DTYPES
    has_grad: Callable[[], bool] = _yes
    speed_rank: int = 100
    fused_inner: Optional[FusedForm] = None
    layout: str = TOKENS

    @property
    def supports_grad(self) -> bool:
        return bool(self.has_grad())

    def runs_on(self, device: DeviceLike) -> bool:
        device = torch.device(device)
        return (self.device_types is None or device.type in self.device_types) and self.is_available(device)

    def reason(self, device: DeviceLike) -> str:
        device = torch.device(device)
        if self.runs_on(device):
            return "available"
        if self.unavailable_reason is not None:
            return self.unavailable_reason(device)
        if self.device_types is not None and device.type not in self.device_types:
            return f"{self.name} runs on {', '.join(self.device_types)} devices only (this is {device.type})"
        return f"not available on {device.type}"

    def declare(self, device: DeviceLike) -> Declaration:
        """This backend's capabilities on `device`, as data."""
        device = torch.device(device)
        available = self.runs_on(device)
        fused, fused_why_not = None, ""
        if self.fused_inner is not None:
            fused = self.fused_inner.load() is not None
            fused_why_not = "" if fused else self.fused_inner.missing()
        return Declaration(self.name, available, "" if available else self.reason(device), self.device_types,
                           tuple(self.dtypes), self.supports_grad, self.speed_rank, fused, fused_why_not,
                           self.layout)


_REGISTRY: Dict[str, ScanBackend] = {}
_optional_loaded = False


def register_backend(name: str, fn: ScanFn, is_available: Callable[[torch.device], bool],
                     unavailable_reason: Optional[Callable[[torch.device], str]] = None, *,
                     device_types: Optional[Tuple[str, ...]] = None,
                     dtypes: Tuple[torch.dtype, ...] = ALL_FLOAT_DTYPES, supports_grad: Callable[[], bool] = _yes,
                     speed_rank: int = 100, fused_inner: Optional[FusedForm] = None,
                     layout: str = TOKENS) -> None:
    """Add (or replace) a backend under `name` with its declared capabilities.

    `device_types`: the device types it runs on (None: any; `is_available` may still refuse one);
    `supports_grad()`: whether `fn`'s result carries gradients to all its inputs; `speed_rank`:
    lower is faster ("auto" takes the fastest backend that fits); `fused_inner`: a fused form of
    the whole Mamba inner computation, if the backend offers one; `layout`: "tokens" or "channels",
    the input layout the Mamba block hands it (see the module docstring).
    """
    if not name or name == AUTO:
        raise ValueError(f"a scan backend needs a name other than '' and '{AUTO}', got {name!r}")
    if not callable(supports_grad):
        raise ValueError(f"supports_grad must be a callable returning a bool, got {supports_grad!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    _REGISTRY[name] = ScanBackend(name, fn, is_available, unavailable_reason,
                                  None if device_types is None else tuple(device_types), tuple(dtypes),
                                  supports_grad, speed_rank, fused_inner, layout)


def register_cuda_backend(name: str, fn: ScanFn, import_error: Callable[[], Optional[str]],
                          what: str, fix: str, *, supports_grad: Callable[[], bool] = _yes,
                          speed_rank: int = 100, fused_inner: Optional[FusedForm] = None,
                          dtypes: Tuple[torch.dtype, ...] = KERNEL_DTYPES, layout: str = CHANNELS) -> None:
    """Register a backend that runs on CUDA devices only and needs an optional import.

    `import_error()` returns None when the backend's modules import, else why not; `what` names
    the backend in messages ("mamba-ssm"), `fix` says how to install it; the keyword arguments are
    its declared capabilities (see `register_backend`); CUDA kernels read unit-stride
    (b, channels, L) inputs, so the layout defaults to "channels".
    """

    def is_available(device: torch.device) -> bool:
        return device.type == "cuda" and torch.cuda.is_available() and import_error() is None

    def unavailable_reason(device: torch.device) -> str:
        if device.type != "cuda":
            return f"{what} runs on CUDA devices only (this is {device.type})"
        if not torch.cuda.is_available():
            return "no CUDA device is visible to torch"
        error = import_error()
        if error is not None:
            return f"{what} does not import ({error}); fix: {fix}"
        return "available"

    register_backend(name, fn, is_available, unavailable_reason, device_types=("cuda",), dtypes=dtypes,
                     supports_grad=supports_grad, speed_rank=speed_rank, fused_inner=fused_inner, layout=layout)


def _load_optional_backends() -> None:
    global _optional_loaded
    if _optional_loaded:
        return
    _optional_loaded = True
    for module in _OPTIONAL_MODULES:
        if importlib.util.find_spec(module) is None:
            continue
        try:
            importlib.import_module(module)
        except Exception as e:  # one broken optional backend must not take the engine down
            logger.warning("could not load the scan backend module %s: %s", module, e)


def backend_names() -> List[str]:
    """Every registered backend name, available here or not."""
    _load_optional_backends()
    return sorted(_REGISTRY)


def get_backend(name: str) -> ScanBackend:
    """The backend registered as `name` (ValueError naming the known ones if there is none)."""
    _load_optional_backends()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown scan backend {name!r}; expected one of: {', '.join([AUTO] + backend_names())}"
        ) from None


def available_backends(device: DeviceLike = "cpu") -> List[str]:
    """Names of the backends that can run on `device`."""
    device = torch.device(device)
    return [name for name in backend_names() if _REGISTRY[name].runs_on(device)]


def check_backend_name(name: str) -> None:
    """ValueError unless `name` is "auto" or a registered backend."""
    if name != AUTO:
        get_backend(name)


def declarations(device: DeviceLike) -> List[Declaration]:
    """What every registered backend declares about itself on `device`."""
    _load_optional_backends()
    return [_REGISTRY[name].declare(device) for name in sorted(_REGISTRY)]


def requested_backend(name_or_auto: str = AUTO) -> Tuple[str, str]:
    """(name or "auto", where the request came from): "auto" gives way to NNMAMBA_SCAN_BACKEND."""
    if name_or_auto == AUTO:
        env = os.environ.get(ENV_VAR, "").strip()
        if env and env != AUTO:
            return env, f"set by {ENV_VAR}"
    return name_or_auto, "asked for"


def _always(device: torch.device) -> bool:
    return True


def _register_builtin() -> None:
    from nnmamba.ssm.reference_scan import selective_scan_reference
    from nnmamba.ssm.torch_scan import selective_scan_torch

    # the sequential oracle: slowest, never picked by "auto" while torch is there
    register_backend("reference", selective_scan_reference, _always, speed_rank=1000)
    register_backend("torch", selective_scan_torch, _always, speed_rank=50)


_register_builtin()
