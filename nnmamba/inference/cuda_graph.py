"""Replay a network's whole forward as one CUDA graph per input shape (sliding-window tiles).

nnMamba at one 128^3 tile is launch-bound (hundreds of small kernels); a captured graph launches them
all at once. Each new (shape, dtype) is captured on its first call, up to `max_graphs` shapes; past
that, calls run eagerly. Whether a job captures at all is `graph_policy`'s decision.

The first call of a shape costs little more than an eager forward: that forward (on a side stream,
as a capture needs, which also compiles the Triton kernels) is the warm-up and its result is the
answer; the graph is then recorded and replayed once on the same input, and `check(replayed, eager)`
(when given) compares the two, so every graph is checked at the shape it runs before it serves.

Example:
    >>> graphed = GraphedNetwork(prepare_for_inference(net.cuda(), torch.bfloat16))
    >>> for tile in tiles:                       # same shape every time: one capture, then replays
    ...     scores = graphed(tile)               # a fresh tensor (copy of the graph's output)
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn

logger = logging.getLogger(__name__)

# called as check(replayed output, eager output); raises when the capture does not compute the forward
CaptureCheck = Callable[[torch.Tensor, torch.Tensor], None]


class _Captured:
    """One captured forward: static input/output buffers and the graph; `eager` is the warm-up's output."""

    def __init__(self, network: nn.Module, example: torch.Tensor, warmup: int, check: Optional[CaptureCheck]):
        start = time.perf_counter()
        self.input = example.clone()
        stream = torch.cuda.Stream(device=example.device)
        stream.wait_stream(torch.cuda.current_stream(example.device))
        with torch.cuda.stream(stream), torch.no_grad():
            for _ in range(warmup):
                eager = network(self.input)
        torch.cuda.current_stream(example.device).wait_stream(stream)
        self.eager = eager.clone()   # the graph's pool may reuse the warm-up's memory
        self.graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self.graph):
            self.output = network(self.input)
        self.graph.replay()
        if check is not None:
            check(self.output, self.eager)
        torch.cuda.synchronize(example.device)
        self.seconds = time.perf_counter() - start

    def run(self, x: torch.Tensor) -> torch.Tensor:
        self.input.copy_(x)
        self.graph.replay()
        return self.output


class GraphedNetwork(nn.Module):
    """Wraps an eval network on a CUDA device; forward replays a graph captured for x's shape.

    `copy_output=False` returns the graph's own output buffer, overwritten by the next call of the
    same shape (saves one copy when the caller consumes each result at once). `check`: see the
    module docstring. `warmup`: eager forwards before a capture (the last one's output is returned).
    """

    def __init__(self, network: nn.Module, warmup: int = 1, max_graphs: int = 4, copy_output: bool = True,
                 check: Optional[CaptureCheck] = None):
        super().__init__()
        if warmup < 1:
            raise ValueError(f"warmup must be >= 1 (the first run compiles kernels), got {warmup}")
        self.network = network.eval()
        self.warmup = warmup
        self.max_graphs = max_graphs
        self.copy_output = copy_output
        self.check = check
        self._graphs: Dict[Tuple, _Captured] = {}

    @staticmethod
    def key(x: torch.Tensor) -> Tuple:
        return tuple(x.shape), x.dtype, x.device

    def has_graph_for(self, shape, dtype: torch.dtype, device) -> bool:
        """Whether a graph of this input (shape, dtype, device) was captured already."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:   # tensors on "cuda" sit on the current card
            device = torch.device("cuda", torch.cuda.current_device())
        return (tuple(shape), dtype, device) in self._graphs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_cuda:
            raise ValueError(f"GraphedNetwork runs on CUDA tensors, got one on {x.device}")
        key = self.key(x)
        captured = self._graphs.get(key)
        if captured is None:
            if len(self._graphs) >= self.max_graphs:
                with torch.no_grad():
                    return self.network(x)
            captured = self._graphs[key] = _Captured(self.network, x, self.warmup, self.check)
            logger.info("captured a CUDA graph for input %s %s in %.3f s (checked against its eager forward)",
                        tuple(x.shape), x.dtype, captured.seconds)
            eager, captured.eager = captured.eager, None
            return eager
        out = captured.run(x)
        return out.clone() if self.copy_output else out

    def release(self) -> None:
        """Drop every captured graph and its memory pool."""
        self._graphs.clear()
