"""Median timing of a benchmarked call, shared by the scripts in benchmarks/.

    from timing import bench_ms, median_ms   # benchmarks/ is sys.path[0] when a script runs
    ms = bench_ms(lambda: model(x))          # CUDA, 5 warm-up calls, median of 30
    ms = median_ms(step, 2, 3, "cpu")        # wall clock off CUDA (smoke runs)

On CUDA the time is taken between CUDA events around each call, so it includes launch overhead
but not the host's wait for the queue to drain before the first call.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def median_ms(fn: Callable[[], object], warmup: int, iters: int, device) -> float:
    """Median ms of fn() after `warmup` untimed calls: between CUDA events on CUDA, wall clock elsewhere."""
    for _ in range(warmup):
        fn()
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    times = []
    for _ in range(iters):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def bench_ms(fn: Callable[[], object], warmup: int = 5, iters: int = 30) -> float:
    """Median ms of fn() on the current CUDA device (launch overhead included)."""
    return median_ms(fn, warmup, iters, "cuda")
