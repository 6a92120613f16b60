"""An exponential moving average of the weights and BatchNorm statistics while training.

The held-out error of a single late checkpoint swings widely from one thousand steps to the next
(the landmark run of 2026-12-07 read 3.7, 5.4, 4.5 and 5.2 mm at steps 9k-12k), so what a run
checks, brings back and ships is the average of the recent weights, not the last step's. The
averaging is torch's own (`AveragedModel` with its EMA function); BatchNorm's running statistics
are averaged with the weights (`use_buffers=True`), so the averaged network needs no extra pass
over the data.

    average = WeightAverage(model, decay=0.999)   # after loading any weights
    ...; optimizer.step(); average.update(model)
    average.network                               # the averaged network (held-out checks, saving)
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

PREFIX = "average."   # its tensors' names in the run's full checkpoint


class WeightAverage:
    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the weight average's decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self._averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)

    @property
    def network(self) -> torch.nn.Module:
        return self._averaged.module

    def update(self, model: torch.nn.Module) -> None:
        """Fold the model's current weights and statistics in (the first call copies them)."""
        self._averaged.update_parameters(model)

    def state_tensors(self) -> dict:
        """The average and its count under "average.", for the run's full checkpoint (exact resume)."""
        return {PREFIX + k: v for k, v in self._averaged.state_dict().items()}

    def load_state_tensors(self, tensors: dict) -> bool:
        """Restore the average from a checkpoint's tensors; False (it starts afresh) if they hold none."""
        state = {k[len(PREFIX):]: v for k, v in tensors.items() if k.startswith(PREFIX)}
        if not state:
            return False
        self._averaged.load_state_dict(state)
        return True

    def describe(self) -> str:
        return (f"exponential moving average of the weights and BatchNorm statistics, decay {self.decay:g} "
                f"(about the last {round(1 / (1 - self.decay))} steps); the average is what is checked and saved")
