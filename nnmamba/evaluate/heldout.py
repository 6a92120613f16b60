"""Measure a model on its held-out cases through the real inference pipeline (`Predictor`).

Every held-out case is evaluated as it is ("native") and under `transforms` random rigid motions
(rotation up to +-15 degrees about each axis, translation up to +-10 mm: a head placed differently
in the scanner), applied by resampling the image (linear) and its labels (nearest) onto the same
grid and moving the landmarks with the exact inverse transform.

    report = evaluate_model(card, "data/prepared", transforms=4)
    report["summary"]      # {"mean_dice": ..., } / {"mre_mm": ...} / {"accuracy": ...}
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import SimpleITK as sitk

from nnmamba import metrics
from nnmamba.model_card import ModelCard
from nnmamba.train.data import PreparedCase, class_of_case, load_cases, read_manifest
from nnmamba.volume import Volume

MAX_ROTATION_DEGREES = 15.0
MAX_TRANSLATION_MM = 10.0


def random_rigid(case: PreparedCase, rng: np.random.Generator) -> sitk.Euler3DTransform:
    """A random rigid motion about the centre of the case's field of view."""
    size_ijk = np.array(case.image.shape[::-1])
    centre = case.geometry.index_to_physical((size_ijk - 1) / 2.0)
    angles = np.radians(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES, 3))
    transform = sitk.Euler3DTransform(centre.tolist(), *angles.tolist(),
                                      rng.uniform(-MAX_TRANSLATION_MM, MAX_TRANSLATION_MM, 3).tolist())
    return transform


def move_case(case: PreparedCase, transform: sitk.Transform) -> PreparedCase:
    """The case as seen after the head moved by transform^-1: image(x) <- image(T(x)) on the same grid."""
    def resample(array, interpolator, default):
        image = sitk.GetImageFromArray(array)
        image.SetOrigin(case.geometry.origin.tolist())
        image.SetSpacing(case.geometry.spacing.tolist())
        return sitk.GetArrayFromImage(sitk.Resample(image, image, transform, interpolator, default))

    image = resample(case.image, sitk.sitkLinear, float(case.image.min())).astype(np.float32)
    labels = None if case.labels is None else resample(case.labels, sitk.sitkNearestNeighbor, 0).astype(np.uint8)
    landmarks = None
    if case.landmarks_lps is not None:
        inverse = transform.GetInverse()
        landmarks = np.array([inverse.TransformPoint(p.tolist()) for p in case.landmarks_lps])
    return PreparedCase(case.name, image, case.geometry, case.modality, labels, landmarks,
                        weighting=case.weighting)


def _variants(case: PreparedCase, transforms: int, rng: np.random.Generator):
    yield "native", case
    for n in range(transforms):
        yield f"moved{n + 1}", move_case(case, random_rigid(case, rng))


def _summarise_segmentation(rows: list, card: ModelCard) -> dict:
    per_label = {}
    for segment in card.labels:
        dices = [r["scores"][segment.label]["dice"] for r in rows]
        hds = [r["scores"][segment.label]["hd95_mm"] for r in rows]
        finite = [h for h in hds if math.isfinite(h)]
        per_label[segment.name] = {"dice": float(np.nanmean(dices)),
                                   "hd95_mm": float(np.mean(finite)) if finite else None,
                                   "missed": int(sum(1 for h in hds if h == math.inf))}
    return {"mean_dice": float(np.mean([v["dice"] for v in per_label.values()])),
            "mean_hd95_mm": float(np.mean([v["hd95_mm"] for v in per_label.values() if v["hd95_mm"] is not None])),
            "per_label": per_label}


def _summarise_landmarks(rows: list, card: ModelCard) -> dict:
    errors = np.array([r["errors_mm"] for r in rows])      # (variants, landmarks)
    return {"mre_mm": float(errors.mean()), "median_mm": float(np.median(errors)),
            "sd_mm": float(errors.std()), "within_4mm": float((errors <= 4.0).mean()),
            "per_landmark_mm": {lm.name: float(errors[:, n].mean()) for n, lm in enumerate(card.landmarks)}}


def _summarise_classification(rows: list, card: ModelCard) -> dict:
    truth = [r["truth"] for r in rows]
    predicted = [r["predicted"] for r in rows]
    probabilities = np.array([r["probabilities"] for r in rows])
    names = [c.name for c in card.classes]
    per_case = {}
    for r in rows:
        per_case.setdefault(r["case"], []).append(r["predicted"] == r["truth"])
    auc = metrics.one_vs_rest_auc(probabilities, truth)
    native = {r["case"]: {"truth": names[r["truth"]], "predicted": names[r["predicted"]],
                          "probabilities": dict(zip(names, np.round(r["probabilities"], 4).tolist()))}
              for r in rows if r["variant"] == "native"}
    return {"accuracy": metrics.accuracy(predicted, truth),
            "auc": {names[c]: v for c, v in auc.items()},
            "per_case_accuracy": {k: float(np.mean(v)) for k, v in per_case.items()},
            "native": native}


def evaluate_model(card: ModelCard, data_dir, transforms: int = 4, seed: int = 0, device: str = "cpu",
                   cases: Optional[list] = None, progress: Optional[Callable[[str], None]] = None) -> dict:
    """Run `card` on its held-out cases (or `cases`) and score it; returns a JSON-able report."""
    from nnmamba.inference import InferenceOptions, Predictor

    manifest = read_manifest(data_dir)
    heldout = load_cases(data_dir, card.task, "heldout")
    if cases is not None:
        heldout = [c for c in heldout if c.name in cases]
    if not heldout:
        raise ValueError(f"no held-out cases for task {card.task} in {data_dir}")
    predictor = Predictor(InferenceOptions(device=device))
    rng = np.random.default_rng(seed)
    rows = []
    for case in heldout:
        for variant, moved in _variants(case, transforms, rng):
            volume = Volume(moved.image[None], moved.geometry)
            result = predictor.run(volume, [card.task], models={card.task: card})[card.task]
            row = {"case": case.name, "variant": variant}
            if card.task == "segmentation":
                row["scores"] = metrics.segmentation_scores(result.labelmap, moved.labels,
                                                            [s.label for s in card.labels],
                                                            moved.geometry.spacing[::-1])
                message = f"mean Dice {np.nanmean([v['dice'] for v in row['scores'].values()]):.3f}"
            elif card.task == "landmarks":
                row["errors_mm"] = metrics.radial_errors(result.points_lps, moved.landmarks_lps).tolist()
                message = f"MRE {np.mean(row['errors_mm']):.2f} mm"
            else:
                names = [c.name for c in card.classes]
                row.update(truth=class_of_case(case, names), predicted=int(np.argmax(result.probabilities)),
                           probabilities=result.probabilities.tolist())
                message = f"{names[row['truth']]} -> {names[row['predicted']]} (p={result.probabilities.max():.2f})"
            rows.append(row)
            if progress is not None:
                progress(f"{case.name} {variant}: {message}")
    summary = {"segmentation": _summarise_segmentation, "landmarks": _summarise_landmarks,
               "classification": _summarise_classification}[card.task](rows, card)
    return {"model": card.name, "task": card.task,
            "heldout": {c.name: manifest["cases"][c.name]["description"] for c in heldout},
            "ground_truth": manifest["ground_truth"][card.task],
            "protocol": f"each held-out case native + {transforms} random rigid motions (rotation <= "
                        f"{MAX_ROTATION_DEGREES:g} deg per axis, translation <= {MAX_TRANSLATION_MM:g} mm), "
                        f"seed {seed}, through nnmamba.inference.Predictor (no TTA)",
            "summary": summary,
            "rows": [{k: v for k, v in r.items() if k != "scores"} | (
                {"mean_dice": float(np.nanmean([s["dice"] for s in r["scores"].values()]))} if "scores" in r else {})
                for r in rows]}
