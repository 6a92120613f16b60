"""Small constant tensors (grid centres, axis scales, prior tables) made once per device and reused.

Why: `torch.tensor(values, device="cuda")` is a host-to-device copy from pageable memory, and
PyTorch synchronises the stream after such a copy. Inside a batch that means the host waits for
the device dozens of times per step (map_points built two per Newton iteration), and on a busy host
each wait costs a scheduler slice: the data path then runs at the host's pace, not the device's.
A cached constant is copied once; every later batch only reads it (never write into one).

    >>> constant((1.0, 2.0, 3.0), torch.device("cpu")).tolist()
    [1.0, 2.0, 3.0]
"""

from __future__ import annotations

import functools

import torch


def constant(values: tuple, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The read-only tensor of `values` (a nested tuple of numbers) on `device`, copied there once."""
    return _cached(values, torch.device(device), dtype)


@functools.lru_cache(maxsize=512)
def _cached(values: tuple, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # a normal tensor even when first asked for under inference_mode, so later autograd code may use it
    with torch.inference_mode(False):
        return torch.tensor(values, dtype=dtype, device=device)
