"""Guards of a training run: a held-out check every few thousand steps, logged beside the loss, and
a stop when the run has collapsed (so GPU time is not spent on a dead model).

The check runs the weights as they are through the real Predictor on the card's held-out cases
(native pose only, no baseline): what a user would get if the run stopped here.

    check = HeldoutCheck(card, data_dir, out_dir / "heldout_check", every=1000, device="cuda")
    summary = check.run(step, model) if check.due(step) else None
    reason = collapse_reason(card["task"], summary, window_loss, classes)
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch

log = logging.getLogger("nnmamba.train")

# a classifier whose loss stays within this fraction of chance (ln classes) has learnt nothing
CHANCE_FRACTION = 0.97


class HeldoutCheck:
    """Scores the model on held-out cases every `every` steps (0: never)."""

    def __init__(self, card: dict, data_dir: Path, folder: Path, every: int, device: str,
                 cases: Optional[list] = None):
        self.card, self.data_dir, self.folder = card, Path(data_dir), Path(folder)
        self.every, self.device, self.cases = int(every), device, cases
        self.history: list = []

    def due(self, step: int) -> bool:
        return self.every > 0 and step > 0 and step % self.every == 0

    def run(self, step: int, model: torch.nn.Module) -> Optional[dict]:
        from nnmamba.models import save_model

        card = dict(self.card, trained=True, training={"note": f"held-out check at step {step}"})
        saved = save_model(card, model, self.folder, overwrite=True)
        try:
            summary = quick_heldout_scores(saved, self.data_dir, self.device, self.cases)
        except (ValueError, FileNotFoundError) as e:    # nothing held out for this task: say so once
            log.warning("held-out check disabled: %s", e)
            self.every = 0
            return None
        self.history.append({"step": step, "summary": summary})
        log.info("step %d: held-out (native) %s", step,
                 ", ".join(f"{k} {v:.3f}" for k, v in summary.items() if v is not None))
        return summary


def quick_heldout_scores(card, data_dir: Path, device: str, cases: Optional[list] = None) -> dict:
    """The card's held-out cases at their native pose through the real Predictor: mean Dice over the
    scored structures / mean radial error and share within 4 mm / accuracy. The answer and the truth
    come from the task's own hooks (as `nnmamba evaluate` takes them); the scoring is numpy only (no
    HD95, no SimpleITK), so it runs on a bare GPU machine; `nnmamba evaluate` gives the full figures."""
    from nnmamba.evaluate.scoring import WITHIN_MM
    from nnmamba.inference import InferenceOptions, Predictor
    from nnmamba.metrics import dice, radial_errors
    from nnmamba.tasks import get_task
    from nnmamba.tasks.segmentation import scored_structures
    from nnmamba.train.data import load_cases, read_manifest
    from nnmamba.volume import Volume

    task = get_task(card.task)
    manifest = read_manifest(data_dir)
    heldout = [c for c in load_cases(data_dir, card.task, "heldout") if cases is None or c.name in cases]
    if not heldout:
        raise ValueError(f"no held-out cases for task {card.task} in {data_dir}")
    predictor = Predictor(InferenceOptions(device=device))
    scores = []
    for case in heldout:
        result = predictor.run(Volume(case.image[None], case.geometry), [card.task], models={card.task: card})
        answer, truth = task.answer(result[card.task]), task.truth(case, card, manifest)
        if card.task == "segmentation":
            scores += [dice(answer, truth, label) for label, _ in scored_structures(card, manifest, case)]
        elif card.task == "landmarks":
            scores += list(radial_errors(np.asarray(answer), np.asarray(truth)))
        else:
            scores.append(int(np.argmax(answer)) == truth)
    if card.task == "segmentation":
        return {"mean_dice": float(np.nanmean(scores)) if scores else None}
    if card.task == "landmarks":
        return {"mre_mm": float(np.mean(scores)), "within_4mm": float(np.mean(np.array(scores) <= WITHIN_MM))}
    return {"accuracy": float(np.mean(scores))}


def collapse_reason(task: str, summary: Optional[dict], window_loss: float, classes: int,
                    step: int, min_step: int = 2000) -> Optional[str]:
    """Why the run should stop now (None: carry on). Checked only after `min_step` steps: every
    run starts near chance."""
    if step < min_step:
        return None
    if task == "segmentation" and summary is not None and (summary.get("mean_dice") or 0.0) <= 0.01:
        return (f"segmentation collapsed: held-out mean Dice {summary.get('mean_dice')} at step {step} "
                f"(no foreground predicted)")
    if task == "classification" and classes > 1 and window_loss >= CHANCE_FRACTION * math.log(classes):
        return (f"classification at chance: loss {window_loss:.3f} vs ln({classes}) = {math.log(classes):.3f} "
                f"at step {step}")
    return None
