"""Which scan backend a Mamba block runs, from what the backends declare: the capability query.

`choose_scan_backend(declarations, device, dtype, mode)` is pure: it picks from the plain data of
`nnmamba.ssm.backends.declarations(device)`, so it can be checked for a CUDA device without one.
`block_decision` is what a Mamba block asks when no execution plan was applied to it;
`nnmamba.execution_plan` asks the same questions for a whole network and adds the fused forms.
Both live here, under the planner, so the decision flows one way: down from a plan, or answered
here for a block without one; nothing in `ssm/` imports the planner.

Example:
    >>> resolve_backend("auto", "cpu")            # NNMAMBA_SCAN_BACKEND unset
    'torch'
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from nnmamba.errors import PlanError
from nnmamba.ssm import backends
from nnmamba.ssm.backends import AUTO, Declaration, DeviceLike

INFERENCE, TRAINING = "inference", "training"
MODES = (INFERENCE, TRAINING)


def dtype_name(dtype: torch.dtype) -> str:
    """"bfloat16" for torch.bfloat16: how plans and errors name a dtype."""
    return str(dtype).replace("torch.", "")


def _problems(d: Declaration, dtype: torch.dtype, mode: str) -> list:
    found = []
    if not d.available:
        found.append(d.why_not)
    if dtype not in d.dtypes:
        found.append(f"it does not compute in {dtype_name(dtype)} (it takes "
                     f"{', '.join(dtype_name(t) for t in d.dtypes)})")
    if mode == TRAINING and not d.supports_grad:
        found.append("it is forward-only: its result carries no gradients")
    return found


def _training_fix(declared: Sequence[Declaration], dtype: torch.dtype) -> str:
    usable = sorted((d for d in declared if not _problems(d, dtype, TRAINING)), key=lambda d: d.speed_rank)
    fix = "use scan_backend='auto' (the fastest backend that trains here"
    fix += f": {usable[0].name})" if usable else ")"
    if usable:
        fix += f" or scan_backend='{usable[0].name}'"
    faster = [d for d in declared if d.supports_grad and not d.available and dtype in d.dtypes
              and (not usable or d.speed_rank < usable[0].speed_rank)]
    for d in sorted(faster, key=lambda d: d.speed_rank):
        fix += f"; or make {d.name} available for faster training ({d.why_not})"
    return fix


def choose_scan_backend(declared: Sequence[Declaration], device: torch.device, dtype: torch.dtype, mode: str,
                        requested: str = AUTO, source: str = "asked for", prefer: Optional[str] = None,
                        prefer_why: str = "") -> Tuple[str, str]:
    """(backend name, why) from the backends' declarations on `device`.

    An explicit `requested` name must fit: available, computing in `dtype`, with gradients when
    `mode` is training; else `PlanError` naming the fix. "auto" takes `prefer` when it fits, else
    the fastest (lowest speed rank) backend that fits, and says which faster ones it passed over.
    """
    by_name = {d.name: d for d in declared}
    device = torch.device(device)
    if requested != AUTO:
        if requested not in by_name:
            raise ValueError(f"unknown scan backend {requested!r}; expected one of: "
                             f"{', '.join([AUTO] + sorted(by_name))}")
        d = by_name[requested]
        if not d.available:
            raise PlanError(f"scan backend {requested!r} ({source}) cannot run on {device}: {d.why_not}. "
                            f"Use scan_backend='auto' (or unset {backends.ENV_VAR}) to let nnmamba pick one "
                            f"that can.")
        if dtype not in d.dtypes:
            raise PlanError(f"scan backend {requested!r} ({source}) cannot compute in {dtype_name(dtype)} on "
                            f"{device}: {_problems(d, dtype, mode)[0]}. Fix: use another dtype or "
                            f"scan_backend='auto'.")
        if mode == TRAINING and not d.supports_grad:
            raise PlanError(f"scan backend {requested!r} ({source}) cannot train on {device}: it is "
                            f"forward-only, its result carries no gradients, so the Mamba blocks would not "
                            f"learn. Fix: {_training_fix(declared, dtype)}.")
        return requested, source
    fitting = sorted((d for d in declared if not _problems(d, dtype, mode)), key=lambda d: (d.speed_rank, d.name))
    if not fitting:
        detail = "; ".join(f"{d.name}: {', '.join(_problems(d, dtype, mode))}" for d in declared)
        raise PlanError(f"no scan backend can run {mode} on {device} in {dtype_name(dtype)} ({detail}). "
                        f"Fix: use float32 or another device.")
    if prefer is not None and any(d.name == prefer for d in fitting):
        return prefer, prefer_why
    best = fitting[0]
    passed = [f"{d.name} ({'; '.join(_problems(d, dtype, mode))})" for d in sorted(declared, key=lambda d: d.speed_rank)
              if d.speed_rank < best.speed_rank and _problems(d, dtype, mode)]
    verb = "trains" if mode == TRAINING else "runs"
    why = f"auto: the fastest backend that {verb} on {device.type} in {dtype_name(dtype)}"
    return best.name, why + (f"; passed over {', '.join(passed)}" if passed else "")


def decide_fused_inner(declaration: Declaration, forced: Optional[bool] = None) -> Tuple[bool, str]:
    """(use the backend's fused inner function?, why); `forced=True` when it cannot -> PlanError."""
    name = declaration.name
    if declaration.fused_inner is None:
        if forced:
            raise PlanError(f"fused_inner=True: scan backend {name!r} offers no fused inner function "
                            f"(mamba_ssm does, with causal-conv1d). Fix: scan_backend='mamba_ssm' or "
                            f"fused_inner=False.")
        return False, f"{name} offers no fused inner function"
    if not declaration.fused_inner:
        if forced:
            raise PlanError(f"fused_inner=True: the fused inner function of {name} is not usable: "
                            f"{declaration.fused_inner_why_not}. Or pass fused_inner=False.")
        return False, f"unfused: {declaration.fused_inner_why_not}"
    if forced is False:
        return False, "turned off (override)"
    return True, f"{name}'s fused conv1d + projections + scan"


def block_decision(scan_backend: str, device: torch.device, dtype: torch.dtype, mode: str) -> Tuple[str, bool, str]:
    """(backend, fused inner on?, why) for one Mamba block run without an applied plan."""
    requested, source = backends.requested_backend(scan_backend)
    declared = backends.declarations(device)
    name, why = choose_scan_backend(declared, torch.device(device), dtype, mode, requested, source)
    fused, fused_why = decide_fused_inner(next(d for d in declared if d.name == name))
    return name, fused, f"{why}; fused inner function {'on' if fused else 'off'}: {fused_why}"


def resolve_backend(name_or_auto: str = AUTO, device: DeviceLike = "cpu", dtype: torch.dtype = torch.float32,
                    mode: str = INFERENCE) -> str:
    """The backend name to use on `device`, as a Mamba block without a plan asks it (`block_decision`).

    An explicit name must fit (else `BackendUnavailableError`, a RuntimeError, saying why and how to
    fix it). "auto" honours NNMAMBA_SCAN_BACKEND, then takes the fastest backend that fits.
    """
    return block_decision(name_or_auto, torch.device(device), dtype, mode)[0]
