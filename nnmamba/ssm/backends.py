"""Registry of selective-scan backends: name -> function with mamba-ssm's `selective_scan_fn` signature.

Every backend computes, for each batch b, channel d and state n, the recurrence

    h[t] = exp(delta[t] * A) * h[t-1] + delta[t] * B[t] * u[t]
    y[t] = sum_n C[t] * h[t] + D * u[t],   then   y *= silu(z)   (when z is given)

with `fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False) -> y` and shapes
u, delta, z: (batch, d_inner, L); A: (d_inner, d_state); B, C: (batch, d_state, L);
D, delta_bias: (d_inner,); y: like u.

Adding a backend is one line (in the backend's own module, imported from `_OPTIONAL_MODULES`):

    register_backend("triton", selective_scan_triton, is_available=triton_available)

Resolution (`resolve_backend`): a name asked for explicitly wins; "auto" looks at the environment
variable NNMAMBA_SCAN_BACKEND first, then picks mamba_ssm > triton > torch on CUDA and torch elsewhere.
A backend asked for by name that cannot run raises `BackendUnavailableError`; it never silently
falls back to another one.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Union

import torch

from nnmamba.errors import BackendUnavailableError

logger = logging.getLogger(__name__)

ENV_VAR = "NNMAMBA_SCAN_BACKEND"
AUTO = "auto"
# Tried in this order by "auto" on a CUDA device; the first available one wins.
CUDA_PREFERENCE = ("mamba_ssm", "triton", "torch")
# Backends that live in optional modules; each registers itself when imported.
_OPTIONAL_MODULES = ("nnmamba.ssm.mamba_ssm_scan", "nnmamba.ssm.triton_scan")

ScanFn = Callable[..., torch.Tensor]
DeviceLike = Union[str, torch.device]


@dataclass(frozen=True)
class ScanBackend:
    """One registered backend.

    `is_available(device) -> bool`; `unavailable_reason(device) -> str` explains a False in plain
    words including the fix (e.g. "pip install nnmamba[cuda]").
    """

    name: str
    fn: ScanFn
    is_available: Callable[[torch.device], bool]
    unavailable_reason: Optional[Callable[[torch.device], str]] = None

    def reason(self, device: DeviceLike) -> str:
        device = torch.device(device)
        if self.is_available(device):
            return "available"
        if self.unavailable_reason is not None:
            return self.unavailable_reason(device)
        return f"not available on {device.type}"


_REGISTRY: Dict[str, ScanBackend] = {}
_optional_loaded = False


def register_backend(name: str, fn: ScanFn, is_available: Callable[[torch.device], bool],
                     unavailable_reason: Optional[Callable[[torch.device], str]] = None) -> None:
    """Add (or replace) a backend under `name`."""
    if not name or name == AUTO:
        raise ValueError(f"a scan backend needs a name other than '' and '{AUTO}', got {name!r}")
    _REGISTRY[name] = ScanBackend(name, fn, is_available, unavailable_reason)


def register_cuda_backend(name: str, fn: ScanFn, import_error: Callable[[], Optional[str]],
                          what: str, fix: str) -> None:
    """Register a backend that runs on CUDA devices only and needs an optional import.

    `import_error()` returns None when the backend's modules import, else why not; `what` names
    the backend in messages ("mamba-ssm"), `fix` says how to install it.
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

    register_backend(name, fn, is_available, unavailable_reason)


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
    return [name for name in backend_names() if _REGISTRY[name].is_available(device)]


def check_backend_name(name: str) -> None:
    """ValueError unless `name` is "auto" or a registered backend."""
    if name != AUTO:
        get_backend(name)


def _auto_pick(device: torch.device) -> str:
    if device.type == "cuda":
        for name in CUDA_PREFERENCE:
            backend = _REGISTRY.get(name)
            if backend is not None and backend.is_available(device):
                return name
    return "torch"


def resolve_backend(name_or_auto: str = AUTO, device: DeviceLike = "cpu") -> str:
    """The backend name to use on `device`.

    An explicit name must be available (else `BackendUnavailableError`, a RuntimeError, saying why
    and how to fix it). "auto" honours NNMAMBA_SCAN_BACKEND, then prefers the fastest available.
    """
    _load_optional_backends()
    device = torch.device(device)
    name = name_or_auto
    source = "asked for"
    if name == AUTO:
        env = os.environ.get(ENV_VAR, "").strip()
        if env and env != AUTO:
            name, source = env, f"set by {ENV_VAR}"
        else:
            return _auto_pick(device)
    try:
        backend = get_backend(name)
    except ValueError as e:
        raise ValueError(f"scan backend {name!r} ({source}): {e}") from None
    if not backend.is_available(device):
        raise BackendUnavailableError(
            f"scan backend {name!r} ({source}) cannot run on {device}: {backend.reason(device)}. "
            f"Use scan_backend='auto' (or unset {ENV_VAR}) to let nnmamba pick one that can."
        )
    return name


def _always(device: torch.device) -> bool:
    return True


def _register_builtin() -> None:
    from nnmamba.ssm.reference_scan import selective_scan_reference
    from nnmamba.ssm.torch_scan import selective_scan_torch

    register_backend("reference", selective_scan_reference, _always)
    register_backend("torch", selective_scan_torch, _always)


_register_builtin()
