"""The `mamba_ssm` scan backend: mamba-ssm's CUDA `selective_scan_fn` (and, for the Mamba block,
`mamba_inner_fn` when causal-conv1d is installed too).

mamba-ssm cannot even be imported without CUDA, so everything here is imported lazily and
defensively; the import error is kept and shown when the backend is asked for by name.
"""

from __future__ import annotations

import functools
from typing import Optional

import torch

from nnmamba.ssm.backends import FusedForm, register_cuda_backend

INSTALL_HINT = "pip install nnmamba[cuda] (needs a CUDA toolkit; builds mamba-ssm and causal-conv1d)"
CAUSAL_CONV1D_HINT = "pip install causal-conv1d (needs a CUDA toolkit), or nnmamba[cuda] for both"
# benchmarks/RESULTS.md: the compiled kernels, preferred by "auto" over the Triton scan in the eager
# engine (the Triton scan alone is faster, but the eager block with mamba_inner_fn was not measured
# against it); the inference planner picks triton where fused MICCSS applies
SPEED_RANK = 10


@functools.lru_cache(maxsize=1)
def _import_error() -> Optional[str]:
    """None when mamba-ssm's selective scan imports, else why not."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
    except Exception as e:  # ImportError, or OSError/RuntimeError from a broken CUDA build
        return f"{type(e).__name__}: {e}"
    return None


@functools.lru_cache(maxsize=1)
def _inner_import_error() -> Optional[str]:
    """None when mamba-ssm's fused `mamba_inner_fn` and causal-conv1d import, else why not."""
    error = _import_error()
    if error is not None:
        return f"mamba-ssm does not import ({error}); fix: {INSTALL_HINT}"
    try:
        import causal_conv1d  # noqa: F401
        from mamba_ssm.ops.selective_scan_interface import mamba_inner_fn  # noqa: F401
    except Exception as e:
        return f"causal-conv1d does not import ({type(e).__name__}: {e}); fix: {CAUSAL_CONV1D_HINT}"
    return None


def inner_fn():
    """mamba-ssm's fused `mamba_inner_fn` when mamba-ssm and causal-conv1d both import, else None."""
    if _inner_import_error() is not None:
        return None
    from mamba_ssm.ops.selective_scan_interface import mamba_inner_fn

    return mamba_inner_fn


def selective_scan_mamba_ssm(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                             C: torch.Tensor, D: Optional[torch.Tensor] = None,
                             z: Optional[torch.Tensor] = None, delta_bias: Optional[torch.Tensor] = None,
                             delta_softplus: bool = False) -> torch.Tensor:
    """mamba-ssm's CUDA kernel. u, delta, z: (batch, d_inner, L); A: (d_inner, d_state);
    B, C: (batch, d_state, L); D, delta_bias: (d_inner,) float32. Returns y like u."""
    error = _import_error()
    if error is not None:
        raise RuntimeError(f"the mamba_ssm scan backend is not usable: {error}; fix: {INSTALL_HINT}")
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    return selective_scan_fn(u, delta, A.float(), B, C, None if D is None else D.float(), z=z,
                             delta_bias=None if delta_bias is None else delta_bias.float(),
                             delta_softplus=delta_softplus)


register_cuda_backend("mamba_ssm", selective_scan_mamba_ssm, _import_error, "mamba-ssm", INSTALL_HINT,
                      speed_rank=SPEED_RANK,
                      fused_inner=FusedForm("mamba_inner_fn", inner_fn, lambda: _inner_import_error() or ""))
