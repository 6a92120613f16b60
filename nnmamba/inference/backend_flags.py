"""Process-wide torch settings for inference on CUDA, set once by an entry point (the `predict`
command, the worker's warm-up), never at import: they change every later computation in the process.

- TF32 for float32 convolutions (PyTorch's default, stated here so that no earlier setting of the
  process changes it): Hopper/Ampere tensor cores run float32 convolutions as TF32 (10-bit mantissa
  inputs, float32 accumulation), within the documented tolerance (benchmarks/RESULTS.md: 6e-5 of
  max |output|). Matrix products stay full float32: the MICCSS projections are a few GFLOP per
  tile (tens of microseconds), so TF32 there would only add error.
- cuDNN autotuning (`cudnn.benchmark`): a sliding window runs the same few tile shapes thousands of
  times, so timing the convolution algorithms once per shape pays back at once.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def configure_for_inference(device) -> dict:
    """Set the CUDA inference flags when `device` is a CUDA device; returns what was set ({} otherwise)."""
    import torch

    if torch.device(device).type != "cuda":
        return {}
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    settings = {"cudnn.allow_tf32": True, "cudnn.benchmark": True}
    log.info("CUDA inference settings: %s", settings)
    return settings
