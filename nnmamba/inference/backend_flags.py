"""Process-wide torch settings for inference on CUDA, set once by an entry point (the `predict`
command, the worker's warm-up), never at import: they change every later computation in the process.

- TF32 for float32 convolutions and matrix products: Hopper/Ampere tensor cores run float32 work as
  TF32 (10-bit mantissa inputs, float32 accumulation). The fp32 fast path stays within the documented
  tolerance (benchmarks/RESULTS.md: TF32 convolutions alone give 6e-5 of max |output|), and the
  predictor's probe check refuses a copy that does not.
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
    torch.set_float32_matmul_precision("high")
    settings = {"cudnn.allow_tf32": True, "cudnn.benchmark": True, "float32_matmul_precision": "high"}
    log.info("CUDA inference settings: %s", settings)
    return settings
