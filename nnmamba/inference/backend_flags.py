"""Process-wide torch settings for inference on CUDA, set once by an entry point (the `predict`
command, the worker's warm-up), never at import: they change every later computation in the process.

- TF32 for float32 convolutions (PyTorch's default, stated here so that no earlier setting of the
  process changes it): Hopper/Ampere tensor cores run float32 convolutions as TF32 (10-bit mantissa
  inputs, float32 accumulation), within the documented tolerance (benchmarks/RESULTS.md: 6e-5 of
  max |output|). Matrix products stay full float32: the MICCSS projections are a few GFLOP per
  tile (tens of microseconds), so TF32 there would only add error.
- No cuDNN autotuning (`cudnn.benchmark` off, also stated against an earlier setting): the search
  times every convolution algorithm for each new shape and dtype, in every fresh process (its choice
  is not kept), so it lands on the first result of a one-file `nnmamba predict` and of a fresh
  worker: once per shape for the probe check, once for the tile batch. It buys nothing afterwards:
  the planned copy's 128^3 forward took 7.56 ms without it and 7.55 ms with it in fp32, 6.15 and
  6.12 ms in bf16 (H200, benchmarks/RESULTS.md). Training keeps it (`nnmamba train`): one shape
  for hours, where it was measured faster.
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
    torch.backends.cudnn.benchmark = False
    settings = {"cudnn.allow_tf32": True, "cudnn.benchmark": False}
    log.info("CUDA inference settings: %s", settings)
    return settings
