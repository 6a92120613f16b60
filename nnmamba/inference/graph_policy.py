"""When a CUDA graph pays for itself in one job: its capture against what its replays save.

A graph saves the host's kernel launches: an eager forward of the planned copy takes
max(host launch time, device time), a replay only the device time. So replays save
host_launch - device(batch) each while the forward is launch-bound, and nothing once the tile batch
keeps the device busier than the host (then the host queues launches ahead of the device). A
capture costs its recording and instantiation and the replay that checks it (`cuda_graph`). The
first forward of a shape runs eagerly either way (it is the capture's warm-up, and its result is
used), so a job of F forwards of one shape has F - 1 replays to pay for the capture; a graph already
captured by an earlier job of a worker costs nothing more.

Measured on an H100 (benchmarks/RESULTS.md, 2026-11-25: nnMambaSeg(1, 32, 3, 6), 1 x 1 x 128^3):
the planned copy without a graph 8.25 ms fp32 / 9.18 ms bf16, replayed 7.86 / 6.27 ms (so at batch 1
a bf16 replay saves 2.9 ms, fp32 0.4 ms), bf16 batch 2 replayed 11.49 ms (device-bound: no saving).

Example:
    >>> use, why = graphs_pay_off(forwards=100, tile_batch=1, tile_voxels=128 ** 3, dtype_name="bfloat16")
    >>> use
    True
    >>> graphs_pay_off(forwards=13, tile_batch=8, tile_voxels=128 ** 3, dtype_name="bfloat16")[0]
    False
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

REFERENCE_TILE_VOXELS = 128 ** 3


@dataclass(frozen=True)
class GraphCosts:
    """Seconds of one forward's launches on the host, of one reference tile on the device in a graph,
    and the part of a capture that is not a forward (recording + instantiation), per dtype."""

    host_launch_s: float
    device_per_tile_s: float
    capture_overhead_s: float

    def device_s(self, tile_batch: int, tile_voxels: int) -> float:
        """Device seconds of one forward of `tile_batch` tiles of `tile_voxels` (linear in voxels)."""
        return self.device_per_tile_s * tile_batch * tile_voxels / REFERENCE_TILE_VOXELS

    def saving_per_replay_s(self, tile_batch: int, tile_voxels: int) -> float:
        return max(0.0, self.host_launch_s - self.device_s(tile_batch, tile_voxels))

    def capture_s(self, tile_batch: int, tile_voxels: int) -> float:
        """Recording and instantiation (taken as one more host launch: every kernel is recorded once,
        then the graph is built node by node) plus the replay that checks the capture."""
        return self.capture_overhead_s + self.device_s(tile_batch, tile_voxels)


# H100 figures of the module docstring; capture_overhead_s: an estimate (two host launches' worth),
# to be replaced by the `graph_capture` stage benchmarks/predict_e2e.py measures.
MEASURED = {
    "bfloat16": GraphCosts(host_launch_s=9.18e-3, device_per_tile_s=6.27e-3, capture_overhead_s=2 * 9.18e-3),
    "float16": GraphCosts(host_launch_s=9.18e-3, device_per_tile_s=6.27e-3, capture_overhead_s=2 * 9.18e-3),
    "float32": GraphCosts(host_launch_s=8.25e-3, device_per_tile_s=7.86e-3, capture_overhead_s=2 * 8.25e-3),
}


def forwards_in_job(tiles: int, tile_batch: int, mirrors: int = 1) -> int:
    """Forward passes of a sliding window: batches of `tile_batch` tiles, each run once per mirror."""
    if tiles < 0 or tile_batch < 1 or mirrors < 1:
        raise ValueError(f"need tiles >= 0, tile_batch >= 1 and mirrors >= 1, got {tiles}, {tile_batch}, {mirrors}")
    return math.ceil(tiles / tile_batch) * mirrors


def graphs_pay_off(forwards: int, tile_batch: int, tile_voxels: int, dtype_name: str,
                   captured: bool = False) -> Tuple[bool, str]:
    """(capture/replay a graph in this job?, why, with the numbers). `captured`: the graph of this
    shape exists already (an earlier job of the same worker paid for it)."""
    if forwards < 0 or tile_batch < 1 or tile_voxels < 1:
        raise ValueError(f"need forwards >= 0, tile_batch >= 1, tile_voxels >= 1, got {forwards}, "
                         f"{tile_batch}, {tile_voxels}")
    costs = MEASURED.get(dtype_name)
    if costs is None:
        return False, f"no measured graph costs for {dtype_name}"
    saving = costs.saving_per_replay_s(tile_batch, tile_voxels)
    if saving <= 0.0:
        return False, (f"{tile_batch} tile(s) of {tile_voxels} voxels keep the device busier "
                       f"({1e3 * costs.device_s(tile_batch, tile_voxels):.1f} ms) than launching a forward "
                       f"({1e3 * costs.host_launch_s:.1f} ms): a replay would save nothing")
    if captured:
        return True, f"captured by an earlier job; each replay saves ~{1e3 * saving:.1f} ms"
    replays = max(0, forwards - 1)
    capture = costs.capture_s(tile_batch, tile_voxels)
    verdict = replays * saving > capture
    return verdict, (f"{replays} replays x ~{1e3 * saving:.1f} ms saved = {1e3 * replays * saving:.0f} ms "
                     f"{'>' if verdict else '<='} ~{1e3 * capture:.0f} ms to capture")
