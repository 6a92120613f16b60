"""A test-only scan backend: the torch scan declaring layout "channels", so that the channel-major
paths the CUDA kernels take (Mamba.inner_channels, MICCSS's weight-flip form) run on the CPU."""

from __future__ import annotations

import contextlib

from nnmamba.ssm import backends
from nnmamba.ssm.torch_scan import selective_scan_torch

NAME = "torch_channels_test"


@contextlib.contextmanager
def channel_layout_backend():
    """Register the backend for the duration of a `with` block; yields its name."""
    backends.register_backend(NAME, selective_scan_torch, lambda device: True, speed_rank=10_000,
                              layout=backends.CHANNELS)
    try:
        yield NAME
    finally:
        backends._REGISTRY.pop(NAME)
