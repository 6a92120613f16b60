"""Measure a model on its held-out cases through the real inference pipeline (`Predictor`), beside
its trivial baseline on the very same inputs.

Every held-out case is evaluated in three groups of variants:
- native: the case as prepared;
- motion: `transforms` random similarity motions (rotation, translation, isotropic scale;
  motions.py), the ground truth moved with the image;
- degraded: thick slices, a bias field, Gaussian noise, one at a time (degrade.py), the ground truth
  unchanged.
Each variant is answered by the model and by the baseline (baselines.py) and both are scored the same
way (scoring.py); the report holds per group the model's and the baseline's figures side by side.

    report = evaluate_model(card, "data/prepared", transforms=4)
    report["groups"]["motion"]["model"]["mean_dice"], report["groups"]["motion"]["baseline"]["mean_dice"]
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional

import numpy as np

from nnmamba.evaluate import baselines, degrade, motions, scoring
from nnmamba.model_card import ModelCard
from nnmamba.tasks import get_task
from nnmamba.train.data import PreparedCase, load_cases, read_manifest
from nnmamba.volume import Volume

GROUPS = ("native", "motion", "degraded")


def variants(case: PreparedCase, transforms: int, degraded: bool, seed: int, case_index: int) -> Iterator[tuple]:
    """(group, variant name, moved/degraded case); motions and degradations draw from their own seeded
    streams, so switching degradations off leaves the motions as they were."""
    if transforms < 0:
        raise ValueError(f"transforms must be >= 0, got {transforms}")
    yield "native", "native", case
    motion_rng = np.random.default_rng([seed, case_index, 0])
    for n in range(transforms):
        yield "motion", f"moved{n + 1}", motions.move_case(case, motions.random_similarity(case, motion_rng))
    if degraded:
        degrade_rng = np.random.default_rng([seed, case_index, 1])
        for name, function in degrade.DEGRADATIONS.items():
            yield "degraded", name, function(case, degrade_rng)


def _model_answer(predictor, card: ModelCard, case: PreparedCase):
    result = predictor.run(Volume(case.image[None], case.geometry), [card.task], models={card.task: card})[card.task]
    return get_task(card.task).answer(result)


def _group_summaries(card: ModelCard, rows: list, with_baseline: bool) -> dict:
    summarise = get_task(card.task).summarise
    groups = {}
    for group in GROUPS:
        members = [r for r in rows if r["group"] == group]
        if members:
            groups[group] = {"model": summarise([r["model"] for r in members], members, card),
                             "baseline": summarise([r["baseline"] for r in members], members, card)
                             if with_baseline else None}
    return groups


def _row_message(card: ModelCard, row: dict) -> str:
    """One variant's figures for the progress log: 'case variant: model ..., baseline ...'."""
    task = get_task(card.task)

    def figure(who: str) -> str:
        return task.headline(task.summarise([row[who]], [row], card))

    baseline = "" if row["baseline"] is None else f", baseline {figure('baseline')}"
    return f"{row['case']} {row['variant']}: model {figure('model')}{baseline}"


def _protocol(transforms: int, degraded: bool, seed: int, baseline: Optional[str], mirroring: str = "no TTA") -> str:
    text = (f"each held-out case native + {transforms} random similarity motions (rotation <= "
            f"{motions.MAX_ROTATION_DEGREES:g} deg per axis, translation <= {motions.MAX_TRANSLATION_MM:g} mm, "
            f"isotropic scale {1 - motions.MAX_SCALE_CHANGE:g}-{1 + motions.MAX_SCALE_CHANGE:g}, "
            f"about the field-of-view centre; ground truth moved with the image)")
    if degraded:
        text += f" + degraded: {degrade.describe_degradations()}"
    text += f"; seed {seed}; through nnmamba.inference.Predictor ({mirroring})"
    if baseline:
        text += f"; baseline on the same inputs: {baseline}"
    return text


def _mirroring(card: ModelCard, tta: bool) -> str:
    if tta and card.mirror_axes:
        return f"mirror TTA over the card's axes {list(card.mirror_axes)}"
    if card.mirror_always:
        return f"the mean over the mirrors of axes {list(card.mirror_axes)}, which the card makes its answer"
    return "no TTA"


def trained_on(card: ModelCard) -> set:
    """The cases (real volumes and label maps) the card's training record says it learnt from."""
    data = (card.training or {}).get("data") or {}
    return {entry["case"] for role in ("train", "label_maps") for entry in data.get(role, [])}


def evaluate_model(card: ModelCard, data_dir, transforms: int = 4, degraded: bool = True, baseline: bool = True,
                   seed: int = 0, device: str = "cpu", cases: Optional[list] = None,
                   progress: Optional[Callable[[str], None]] = None, atlas: str = baselines.ATLAS_CASE,
                   template: str = baselines.TEMPLATE_CASE, tta: bool = False) -> dict:
    """Run `card` (and its baseline) on its held-out cases (or `cases`) and score both; a JSON-able report."""
    from nnmamba.inference import InferenceOptions, Predictor

    manifest = read_manifest(data_dir)
    heldout = load_cases(data_dir, card.task, "heldout")
    if cases is not None:
        heldout = [c for c in heldout if c.name in cases]
    if not heldout:
        raise ValueError(f"no held-out cases for task {card.task} in {data_dir}")
    seen = sorted(trained_on(card) & {c.name for c in heldout})
    if seen:   # the manifest's split changed since training: those figures would be training accuracy
        raise ValueError(f"{card.name} was trained on {seen}, which {data_dir}/manifest.json now holds out; "
                         f"evaluate the others (--cases {' '.join(c.name for c in heldout if c.name not in seen)}) "
                         f"or retrain on the current split")
    task = get_task(card.task)
    task.check_manifest(manifest)
    answer_baseline = task.baseline(card, data_dir, manifest, atlas, template) if baseline else None
    predictor = Predictor(InferenceOptions(device=device, tta=tta))
    rows = []
    for index, case in enumerate(heldout):
        for group, variant, moved in variants(case, transforms, degraded, seed, index):
            truth = task.truth(moved, card, manifest)
            row = {"case": case.name, "group": group, "variant": variant,
                   "model": task.score(_model_answer(predictor, card, moved), truth, moved, card, manifest),
                   "baseline": task.score(answer_baseline.answer(moved), truth, moved, card, manifest)
                   if baseline else None}
            rows.append(row)
            if progress is not None:
                progress(_row_message(card, row))
    report = {"model": card.name, "task": card.task,
              "heldout": {c.name: manifest["cases"][c.name]["description"] for c in heldout},
              "ground_truth": manifest.get("ground_truth", {}).get(card.task),
              "baseline": answer_baseline.description if baseline else None,
              "protocol": _protocol(transforms, degraded, seed, answer_baseline.description if baseline else None,
                                    _mirroring(card, tta)),
              "groups": _group_summaries(card, rows, baseline), "rows": rows}
    report.update(task.report_extras(card, manifest, heldout, rows))
    return report
