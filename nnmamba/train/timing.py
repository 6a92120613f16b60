"""How long a training step spends drawing its batch, measured honestly on an asynchronous device.

    clock = StepClock(device)
    start = clock.synchronise(); x, y = problem.batch(2); data_end = clock.synchronise()
    ...  # forward, backward, optimiser, float(loss)
    clock.add(data_end - start, time.perf_counter() - start)
    clock.totals()   # {"data_ms_per_step": ..., "step_ms_per_step": ..., "data_share": ...}
"""

from __future__ import annotations

import time

import torch


class StepClock:
    """Data time (drawing the batch on the device) and whole-step time, per log window and in all.

    The batch is synchronised before its time is read (CUDA runs asynchronously); the step ends at
    `float(loss)`, which synchronises anyway, so measuring adds one sync per step.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.data_s = self.step_s = 0.0
        self.window_data_s = self.window_step_s = 0.0
        self.steps = self.window_steps = 0

    def synchronise(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def add(self, data_s: float, step_s: float) -> None:
        self.data_s += data_s
        self.step_s += step_s
        self.window_data_s += data_s
        self.window_step_s += step_s
        self.steps += 1
        self.window_steps += 1

    def window(self) -> tuple:
        """(data ms, step ms) per step over the window since the last call."""
        n = max(self.window_steps, 1)
        out = (1000 * self.window_data_s / n, 1000 * self.window_step_s / n)
        self.window_data_s = self.window_step_s = 0.0
        self.window_steps = 0
        return out

    def totals(self) -> dict:
        n = max(self.steps, 1)
        return {"data_ms_per_step": round(1000 * self.data_s / n, 2),
                "step_ms_per_step": round(1000 * self.step_s / n, 2),
                "data_share": round(self.data_s / max(self.step_s, 1e-9), 4)}
