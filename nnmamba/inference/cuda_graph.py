"""Replay a network's whole forward as one CUDA graph per input shape (sliding-window tiles).

nnMamba at one 128^3 tile is launch-bound (hundreds of small kernels); a captured graph launches them
all at once. Each new (shape, dtype) is captured on its first call (a few warm-up runs first, which
also compile the Triton kernels), up to `max_graphs` shapes; past that, calls run eagerly.

Example:
    >>> graphed = GraphedNetwork(prepare_for_inference(net.cuda(), torch.bfloat16))
    >>> for tile in tiles:                       # same shape every time: one capture, then replays
    ...     scores = graphed(tile)               # a fresh tensor (copy of the graph's output)
"""

from __future__ import annotations

import logging
from typing import Dict, Tuple

import torch
import torch.nn as nn

logger = logging.getLogger(__name__)


class _Captured:
    """One captured forward: static input/output buffers and the graph."""

    def __init__(self, network: nn.Module, example: torch.Tensor, warmup: int):
        self.input = example.clone()
        stream = torch.cuda.Stream(device=example.device)
        stream.wait_stream(torch.cuda.current_stream(example.device))
        with torch.cuda.stream(stream), torch.no_grad():
            for _ in range(warmup):
                network(self.input)
        torch.cuda.current_stream(example.device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self.graph):
            self.output = network(self.input)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        self.input.copy_(x)
        self.graph.replay()
        return self.output


class GraphedNetwork(nn.Module):
    """Wraps an eval network on a CUDA device; forward replays a graph captured for x's shape.

    `copy_output=False` returns the graph's own output buffer, overwritten by the next call of the
    same shape (saves one copy when the caller consumes each result at once).
    """

    def __init__(self, network: nn.Module, warmup: int = 3, max_graphs: int = 4, copy_output: bool = True):
        super().__init__()
        if warmup < 1:
            raise ValueError(f"warmup must be >= 1 (the first run compiles kernels), got {warmup}")
        self.network = network.eval()
        self.warmup = warmup
        self.max_graphs = max_graphs
        self.copy_output = copy_output
        self._graphs: Dict[Tuple, _Captured] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_cuda:
            raise ValueError(f"GraphedNetwork runs on CUDA tensors, got one on {x.device}")
        key = (tuple(x.shape), x.dtype, x.device)
        captured = self._graphs.get(key)
        if captured is None:
            if len(self._graphs) >= self.max_graphs:
                with torch.no_grad():
                    return self.network(x)
            logger.info("capturing a CUDA graph for input %s %s", tuple(x.shape), x.dtype)
            captured = self._graphs[key] = _Captured(self.network, x, self.warmup)
        out = captured.run(x)
        return out.clone() if self.copy_output else out

    def release(self) -> None:
        """Drop every captured graph and its memory pool."""
        self._graphs.clear()
