"""How the predictor runs one loaded network: the inference plan, applied and checked once at load.

The plan is `nnmamba.execution_plan.make_plan(mode="inference")`, applied with `apply_plan`: on CUDA
the fast inference copy (`fast_path.prepare_for_inference`: BatchNorm folding, fused MICCSS, Triton
upsampling, channels-last, weights in the run's dtype), replayed as CUDA graphs in the jobs where they
pay for themselves (`graph_policy`, `runner`); elsewhere what the plan says (folded BatchNorms on the
CPU), under autocast where the copy keeps float32 weights and bf16/fp16 was asked for.

Whatever differs from the eager network is first run beside it on a probe input (seeded random) and
refused with `FastPathMismatchError` when the two disagree beyond the documented tolerance
(benchmarks/RESULTS.md, "Documented tolerance"): never a silent swap back to eager. The check is of
what the plan changed (folding, fused MICCSS, layouts), so it runs in full float32 (TF32 off: with
TF32 convolutions two correct float32 computations of a trained-like network differ by ~3e-3 of
max |output|, measured on an H200); a copy with bfloat16/float16 weights is checked through the same
transformation made in float32, and must give finite results itself. What keeps the check cheap
without checking less:
- the probe is one tile for the fused copy (its Triton kernels work in chunks of tokens, so the
  probe runs exactly the kernels the tiles run, and compiles them for the tiles), but only 32^3 for
  a copy whose change does not depend on the input size (folded BatchNorms: every weight, tap and
  module of the network is met at 32^3; see SMALL_PROBE_EDGE): 1/8 of a 64^3 tile's forwards on a CPU;
- the eager side runs the `torch` scan on CUDA (an independent implementation: the plan's Triton
  scan would compile a kernel only this check uses);
- the copy is probed without its CUDA graph; each graph is checked instead where it is captured, at
  the tile batch it serves, by a replay against its eager forward (`cuda_graph`), so no graph is
  captured for the probe's batch of one.

Example:
    >>> planned = PlannedNetwork(network, torch.device("cuda"), torch.bfloat16, probe_shape=(1, 1, 128, 128, 128))
    >>> run, graphs = planned.runner(forwards=100, tile_batch=1, tile_shape=(128, 128, 128))
    >>> scores = run(tiles)                        # (B, C, Z, Y, X) -> (B, classes, Z, Y, X) float32
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from nnmamba.errors import ModelError
from nnmamba.execution_plan import make_plan
from nnmamba.inference.cuda_graph import GraphedNetwork
from nnmamba.inference.graph_policy import graphs_pay_off
from nnmamba.inference.plan_application import apply_plan

log = logging.getLogger(__name__)

# max |fast - eager| allowed, as a fraction of max |eager| (benchmarks/RESULTS.md "Documented tolerance")
TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 1e-2, torch.float16: 1e-2}
PROBE_SEED = 20240611
TILE_BATCH_CAP = 8
# Share of the free device memory (after the model, the graphs and the stitched volume) that tiles
# may use: the rest is headroom for post-processing and the allocator's fragmentation.
TILE_MEMORY_SHARE = 0.5
# Probe edge of a copy whose change does not depend on the input size (no fused MICCSS): the
# networks take multiples of 16 (four stride-2 stages), so 32 leaves 2 voxels per axis at the
# deepest stage, where every tap of each 3x3x3 convolution still meets real input.
SMALL_PROBE_EDGE = 32
# the eager side of the check on CUDA (see the module docstring)
REFERENCE_SCAN_BACKEND = "torch"


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


def probe_input(shape: Sequence[int], device) -> torch.Tensor:
    """The seeded probe: uniform in [0, 1), the range the cards' normalisations give a scan. Not a
    standard normal: a Mamba block's output grows with about the cube of its input's scale (B, C and
    the step are all linear in it), so a trained network can overflow on inputs far outside what it
    saw, and a probe there checks nothing a user's scan meets."""
    generator = torch.Generator().manual_seed(PROBE_SEED)
    return torch.rand(tuple(shape), generator=generator).to(device)


def check_against_eager(eager: nn.Module, fast: nn.Module, probe: torch.Tensor, dtype: torch.dtype,
                        name: str = "the model", expected: Optional[torch.Tensor] = None) -> float:
    """Run both on `probe` (`expected`: eager's output, when already computed); raise
    FastPathMismatchError past TOLERANCE[dtype]; returns the relative error."""
    with torch.no_grad():
        expected = eager(probe).float() if expected is None else expected.float()
        got = fast(probe).float()
    if not torch.isfinite(expected).all():
        raise FastPathMismatchError(f"{name}'s own (eager, float32) network gives non-finite scores on the "
                                    f"probe input: its weights are broken, so the model is not run")
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


def probe_shape_for(plan, tile_probe: Sequence[int]) -> tuple:
    """The probe (batch, channels, Z, Y, X) for `plan`: the tile itself where MICCSS is fused, else
    at most SMALL_PROBE_EDGE per spatial axis (see the module docstring)."""
    if plan.fused_miccss:
        return tuple(int(s) for s in tile_probe)
    return tuple(int(s) for s in tile_probe[:2]) + tuple(min(int(s), SMALL_PROBE_EDGE) for s in tile_probe[2:])


@contextlib.contextmanager
def reference_scans(network: nn.Module, plan):
    """Inside, the eager network's Mamba blocks run the `torch` scan on a CUDA plan's device; the
    plan's backend is set back on the way out."""
    from nnmamba.ssm.mamba import Mamba

    blocks = [m for m in network.modules() if isinstance(m, Mamba)]
    if plan.device.type != "cuda" or plan.scan_backend == REFERENCE_SCAN_BACKEND or not blocks:
        yield
        return
    for block in blocks:
        block.use_plan(plan.device, REFERENCE_SCAN_BACKEND, False, plan.mode)
    try:
        yield
    finally:
        for block in blocks:
            block.use_plan(plan.device, plan.scan_backend, plan.fused_inner, plan.mode)


def eager_reference(network: nn.Module, plan, probe: torch.Tensor) -> torch.Tensor:
    """The eager network's output on `probe`, float32: what the check compares the copy with (full
    float32; the `torch` scan on a CUDA plan's device, see `reference_scans`)."""
    with full_float32(), reference_scans(network, plan), torch.no_grad():
        return network(probe).float()


class PlannedNetwork:
    """A loaded eval network run per its execution plan; callable on tile batches (float32 out).

    `probe_shape` (batch, channels, Z, Y, X): one tile; the fast copy is checked at construction on
    `probe_shape_for(plan, probe_shape)`.
    """

    def __init__(self, network: nn.Module, device: torch.device, dtype: torch.dtype,
                 probe_shape: Sequence[int], name: str = "the model", scan_backend: str = "auto"):
        self.network = network
        self.name = name
        self.dtype = dtype
        self.device = torch.device(device)
        self.plan = make_plan(network, self.device, dtype, mode="inference", scan_backend=scan_backend)
        self.tile_bytes = None
        self.relative_error = 0.0
        self.in_channels = int(probe_shape[1])
        planned = apply_plan(network, self.plan)
        # the copy's own weights are in `dtype` only when MICCSS was fused; else autocast gives the dtype
        self._autocast = not self.plan.fused_miccss and dtype != torch.float32
        # graphs are the job's decision (`runner`); the copy underneath runs every other forward
        self._graphed: Optional[GraphedNetwork] = planned if isinstance(planned, GraphedNetwork) else None
        self._run = planned.network if self._graphed is not None else planned
        if self._graphed is not None:
            self._graphed.check = self._check_capture
        if self._run is network:
            return
        tile_voxels = math.prod(int(s) for s in probe_shape[2:])
        probe_shape = probe_shape_for(self.plan, probe_shape)
        probe = probe_input(probe_shape, self.device)
        # A copy run under autocast keeps float32 weights: what the plan changed (folding) is checked in
        # float32; autocast's own rounding is the precision asked for, the same for eager and copy.
        checked = self._run
        if not self._autocast and dtype != torch.float32:
            checked = apply_plan(network, make_plan(network, self.device, torch.float32, mode="inference",
                                                    scan_backend=scan_backend, cuda_graphs=False))
        expected = eager_reference(network, self.plan, probe)
        cuda = self.device.type == "cuda"
        if cuda:
            # the eager forward's freed blocks would stay reserved and count as used in the free
            # memory the tile batch is chosen from
            torch.cuda.empty_cache()
            torch.cuda.synchronize(self.device)
            before = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        with full_float32():
            self.relative_error = check_against_eager(network, checked, probe, torch.float32, name, expected)
        if checked is not self._run:
            check_finite(self._run, probe, dtype, name)
        if cuda:
            # peak of the copies' forwards over the batch-1 probe, scaled to a tile: an upper bound of
            # one tile's working memory (the fixed part, the weights, scales too)
            peak = max(1, torch.cuda.max_memory_allocated(self.device) - before) // int(probe_shape[0])
            self.tile_bytes = int(peak * tile_voxels / math.prod(probe_shape[2:]))
        log.info("planned copy of %s within %.2g of the eager network on a %s probe in float32 (tolerance %g)",
                 name, self.relative_error, "x".join(map(str, probe_shape[2:])), TOLERANCE[torch.float32])

    def autocast(self):
        """The context tiles run under: autocast where the planned copy keeps float32 weights."""
        if not self._autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _forward(self, module: Callable, x: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return module(x).float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, Z, Y, X) -> the network's output, float32 (without CUDA graphs)."""
        return self._forward(self._run, x)

    def runner(self, forwards: int, tile_batch: int, tile_shape: Sequence[int]) -> Tuple[Callable, bool]:
        """(what runs a job of `forwards` forwards of `tile_batch` float32 tiles of `tile_shape`
        (Z, Y, X), whether it replays CUDA graphs): graphs where the plan allows them and they pay for
        themselves in this job (`graph_policy.graphs_pay_off`), logged with the reason."""
        if self._graphed is None:
            return self, False
        shape = (tile_batch, self.in_channels) + tuple(tile_shape)
        captured = self._graphed.has_graph_for(shape, torch.float32, self.device)
        use, why = graphs_pay_off(forwards, tile_batch, math.prod(tile_shape), str(self.dtype).replace("torch.", ""),
                                  captured)
        log.info("CUDA graphs for %s %s in this job: %s", self.name, "on" if use else "off", why)
        return (functools.partial(self._forward, self._graphed) if use else self), use

    def _check_capture(self, replayed: torch.Tensor, eager: torch.Tensor) -> None:
        """A captured graph must replay its eager forward (same kernels: within the dtype's tolerance)."""
        difference, scale = relative_difference(replayed.float(), eager.float())
        tolerance = TOLERANCE[self.dtype] * max(scale, 1e-12)
        if not difference <= tolerance:
            raise FastPathMismatchError(
                f"the CUDA graph of {self.name} does not replay its own eager forward: max |difference| "
                f"{difference:.3g} > tolerance {tolerance:.3g}; its results would not be the model's, so the "
                f"model is not run. Please report this with the model card and the output of `nnmamba info`")

    def tile_batch_for(self, free_bytes: int, cap: int = TILE_BATCH_CAP) -> int:
        """Tiles per forward that fit in TILE_MEMORY_SHARE of `free_bytes` (1..cap); `cap` without an estimate."""
        if self.tile_bytes is None:
            return cap
        return int(max(1, min(cap, TILE_MEMORY_SHARE * free_bytes // self.tile_bytes)))
