"""How the predictor runs one loaded network: the inference plan, applied and checked once at load.

The plan is `nnmamba.execution_plan.make_plan(mode="inference")`, applied with `apply_plan`: on CUDA
the fast inference copy (`fast_path.prepare_for_inference`: BatchNorm folding, fused MICCSS, Triton
upsampling, channels-last, weights in the run's dtype) replayed as CUDA graphs
(`cuda_graph.GraphedNetwork`); elsewhere what the plan says (folded BatchNorms on the CPU), under
autocast where the copy keeps float32 weights and bf16/fp16 was asked for. Whatever differs from the
eager network is first run beside it on a probe input (seeded random, one tile) and refused with
`FastPathMismatchError` when the two disagree beyond the documented tolerance
(benchmarks/RESULTS.md, "Documented tolerance"): never a silent swap back to eager. The check is of
what the plan changed (folding, fused MICCSS, layouts), so it runs in full float32 (TF32 off: with
TF32 convolutions two correct float32 computations of a trained-like network differ by ~3e-3 of
max |output|, measured on an H200); a copy with bfloat16/float16 weights is checked through the same
transformation made in float32, and must give finite results itself.

Example:
    >>> planned = PlannedNetwork(network, torch.device("cuda"), torch.bfloat16, probe_shape=(1, 1, 128, 128, 128))
    >>> scores = planned(tiles)                    # (B, C, Z, Y, X) -> (B, classes, Z, Y, X) float32
"""

from __future__ import annotations

import contextlib
import logging
from typing import Sequence

import torch
import torch.nn as nn

from nnmamba.errors import ModelError
from nnmamba.execution_plan import make_plan
from nnmamba.inference.plan_application import apply_plan

log = logging.getLogger(__name__)

# max |fast - eager| allowed, as a fraction of max |eager| (benchmarks/RESULTS.md "Documented tolerance")
TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 1e-2, torch.float16: 1e-2}
PROBE_SEED = 20240611
TILE_BATCH_CAP = 8
# Share of the free device memory (after the model, the graphs and the stitched volume) that tiles
# may use: the rest is headroom for post-processing and the allocator's fragmentation.
TILE_MEMORY_SHARE = 0.5


@contextlib.contextmanager
def full_float32():
    """Convolutions and matrix products in full float32 (no TF32) inside; the settings are restored."""
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul


class FastPathMismatchError(ModelError):
    """The fast inference copy does not compute what the eager network computes (a bug to report)."""

    code = "fast_path_mismatch"


def relative_difference(got: torch.Tensor, expected: torch.Tensor) -> tuple:
    """(max |got - expected|, max |expected|) as floats, in float64."""
    difference = (got.double() - expected.double()).abs().max().item()
    return difference, expected.double().abs().max().item()


def check_against_eager(eager: nn.Module, fast: nn.Module, probe: torch.Tensor, dtype: torch.dtype,
                        name: str = "the model") -> float:
    """Run both on `probe`; raise FastPathMismatchError past TOLERANCE[dtype]; returns the relative error."""
    with torch.no_grad():
        expected = eager(probe).float()
        got = fast(probe).float()
    if got.shape != expected.shape:
        raise FastPathMismatchError(f"the fast inference copy of {name} returned shape {tuple(got.shape)}, "
                                    f"the eager network {tuple(expected.shape)}")
    difference, scale = relative_difference(got, expected)
    tolerance = TOLERANCE[dtype] * max(scale, 1e-12)
    if not difference <= tolerance:   # also catches NaN
        raise FastPathMismatchError(
            f"the fast inference copy of {name} ({str(dtype).replace('torch.', '')}) disagrees with its "
            f"eager network on the probe input: max |difference| {difference:.3g} > tolerance "
            f"{tolerance:.3g} ({TOLERANCE[dtype]:g} x max |output| {scale:.3g}); its results would not "
            f"be the model's, so the model is not run. Please report this with the model card and "
            f"the output of `nnmamba info`")
    return difference / max(scale, 1e-12)


def check_finite(copy: nn.Module, probe: torch.Tensor, dtype: torch.dtype, name: str = "the model") -> None:
    """FastPathMismatchError unless `copy` gives finite scores on `probe` (e.g. no bfloat16 overflow)."""
    with torch.no_grad():
        scores = copy(probe).float()
    if not torch.isfinite(scores).all():
        raise FastPathMismatchError(f"the fast inference copy of {name} ({str(dtype).replace('torch.', '')}) "
                                    "gives non-finite scores on the probe input; run it in float32 "
                                    "(--precision fp32)")


class PlannedNetwork:
    """A loaded eval network run per its execution plan; callable on tile batches (float32 out).

    `probe_shape` (batch, channels, Z, Y, X): the input the fast copy is checked on at construction.
    """

    def __init__(self, network: nn.Module, device: torch.device, dtype: torch.dtype,
                 probe_shape: Sequence[int], name: str = "the model", scan_backend: str = "auto"):
        self.network = network
        self.dtype = dtype
        self.device = torch.device(device)
        self.plan = make_plan(network, self.device, dtype, mode="inference", scan_backend=scan_backend)
        self.tile_bytes = None
        self.relative_error = 0.0
        planned = apply_plan(network, self.plan)
        # the copy's own weights are in `dtype` only when MICCSS was fused; else autocast gives the dtype
        self._autocast = not self.plan.fused_miccss and dtype != torch.float32
        if planned is network:
            self._run = network
            return
        # The graph captures on its first call; the check runs the copy under it before any tile does.
        probe = torch.randn(tuple(probe_shape), generator=torch.Generator().manual_seed(PROBE_SEED))
        probe = probe.to(self.device)
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)
            before = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        # A copy run under autocast keeps float32 weights: what the plan changed (folding) is checked in
        # float32; autocast's own rounding is the precision asked for, the same for eager and copy.
        checked = planned
        if not self._autocast and dtype != torch.float32:
            checked = apply_plan(network, make_plan(network, self.device, torch.float32, mode="inference",
                                                    scan_backend=scan_backend, cuda_graphs=False))
        with full_float32():
            self.relative_error = check_against_eager(network, checked, probe, torch.float32, name)
        if checked is not planned:
            check_finite(planned, probe, dtype, name)
        if cuda:
            # peak of the forwards over the batch-1 probe: an upper bound of one tile's working memory
            self.tile_bytes = max(1, torch.cuda.max_memory_allocated(self.device) - before) // int(probe_shape[0])
        log.info("planned copy of %s within %.2g of the eager network on the probe in float32 (tolerance %g)",
                 name, self.relative_error, TOLERANCE[torch.float32])
        self._run = planned

    def autocast(self):
        """The context tiles run under: autocast where the planned copy keeps float32 weights."""
        if not self._autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, Z, Y, X) -> the network's output, float32."""
        with self.autocast():
            return self._run(x).float()

    def tile_batch_for(self, free_bytes: int, cap: int = TILE_BATCH_CAP) -> int:
        """Tiles per forward that fit in TILE_MEMORY_SHARE of `free_bytes` (1..cap); `cap` without an estimate."""
        if self.tile_bytes is None:
            return cap
        return int(max(1, min(cap, TILE_MEMORY_SHARE * free_bytes // self.tile_bytes)))
