"""A model's training progress as its card records it (steps, loss curve, time, hardware, held-out
checks), built from the same fields a checkpoint keeps. One builder for the end of a run
(`loop.py`) and for shipping from a checkpoint whose run was cut off before it wrote its card
(`scripts/ship_model.py --state`).

A hardware log entry is [device, first step, last step, seconds(, data ms, step ms per step)]: one
per run of a resumed series.
"""

from __future__ import annotations

from typing import Optional

LOSS_CURVE_POINTS = 40


def hardware_entry(name: str, first: int, last: int, seconds: float, data_ms: Optional[float] = None,
                   step_ms: Optional[float] = None) -> str:
    """One run of the hardware record (runs before data timing was recorded have four fields)."""
    text = f"{name}: steps {first}-{last}, {seconds:.0f} s"
    if data_ms is not None and step_ms:
        text += f", data {data_ms:.1f} ms of {step_ms:.1f} ms per step ({100 * data_ms / step_ms:.0f} %)"
    return text


def progress_record(elapsed_s: float, losses_log: list, hardware_log: list, heldout_log: list,
                    processes: int = 1) -> dict:
    """The card's `training` fields that a run's progress decides."""
    return {
        "final_loss": losses_log[-1][1] if losses_log else None,
        "loss_curve": losses_log[:: max(1, len(losses_log) // LOSS_CURVE_POINTS)],
        "training_time_s": round(elapsed_s, 1),
        "hardware": "; ".join(hardware_entry(*entry) for entry in hardware_log)
                    + (f" (x{processes} processes)" if processes > 1 else ""),
        "heldout_checks": heldout_log,
    }


def from_checkpoint_state(state: dict) -> dict:
    """`progress_record` of a checkpoint's state (checkpoint.json), plus its step count."""
    record = progress_record(state["elapsed_s"], state.get("losses", []), state.get("hardware_log", []),
                             state.get("heldout", []))
    return {"steps": int(state["step"]), **record}
