"""Median timing of a benchmarked call, shared by the scripts in benchmarks/.

    from timing import bench_ms, call_ms, median_ms   # benchmarks/ is sys.path[0] when a script runs
    ms = bench_ms(lambda: model(x))          # CUDA, 5 warm-up calls, median of 30
    ms = median_ms(step, 2, 3, "cpu")        # wall clock off CUDA (smoke runs)
    ms = call_ms(step, device)               # one call, for callers that keep every time

On CUDA the time is taken between CUDA events around each call, so it includes launch overhead
but not the host's wait for the queue to drain before the first call.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def call_ms(fn: Callable[[], object], device) -> float:
    """ms of one fn() call: between CUDA events on CUDA, wall clock elsewhere."""
    if torch.device(device).type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def median_ms(fn: Callable[[], object], warmup: int, iters: int, device) -> float:
    """Median ms of fn() after `warmup` untimed calls: between CUDA events on CUDA, wall clock elsewhere."""
    for _ in range(warmup):
        fn()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return statistics.median(call_ms(fn, device) for _ in range(iters))


def bench_ms(fn: Callable[[], object], warmup: int = 5, iters: int = 30) -> float:
    """Median ms of fn() on the current CUDA device (launch overhead included)."""
    return median_ms(fn, warmup, iters, "cuda")
