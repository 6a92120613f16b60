"""Classification: one probability per class for the whole volume, written as JSON and a TSV table."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnmamba.errors import ModelError
from nnmamba.model_card import ClassSpec
from nnmamba.results import ClassificationResult
from nnmamba.tasks.base import TaskDefinition
from nnmamba.volume import Geometry


class _MajorityBaseline:
    """The majority class of the training cases, whatever the image."""

    def __init__(self, card, data_dir):
        from nnmamba.evaluate import baselines
        from nnmamba.train.data import load_cases

        names = [c.name for c in card.classes]
        self.majority = baselines.majority_class(load_cases(data_dir, card.task, "train"), names)
        self.probabilities = baselines.one_hot(self.majority, len(names))
        self.description = baselines.DESCRIPTIONS["classification"].format(majority=names[self.majority])

    def answer(self, case):
        return self.probabilities


class ClassificationTask(TaskDefinition):
    name = "classification"
    result_type = ClassificationResult
    suffixes = (".probabilities.json", ".probabilities.tsv")
    networks = ("nnMambaEncoder",)
    spatial_output = False

    def card_fields(self, card: dict, hyperparameters: dict, require, fail) -> dict:
        classes = []
        for item in require(card, "classes", list):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise fail(f"each class needs a 'name', got {item!r}")
            classes.append(ClassSpec(item["name"], str(item.get("description", ""))))
        if hyperparameters.get("number_classes") != len(classes) or len(classes) < 2:
            raise fail(f"hyperparameters.number_classes is {hyperparameters.get('number_classes')!r} "
                       f"but the card lists {len(classes)} classes (need >= 2)")
        return {"classes": classes}

    def output_names(self, card) -> list:
        return [c.name for c in card.classes]

    def out_channels(self, card) -> int:
        return len(card.classes)

    def decode(self, card, output, working_geometry: Geometry, volume) -> ClassificationResult:
        """(1, classes) logits -> softmax probabilities (float64)."""
        import torch

        from nnmamba.inference.sliding_window import to_numpy

        if output.shape != (1, len(card.classes)):
            raise ModelError(f"model {card.name} returned shape {tuple(output.shape)}, expected "
                             f"(1, {len(card.classes)})")
        probabilities = to_numpy(torch.softmax(output.float(), dim=1))[0].astype(np.float64)
        return ClassificationResult([c.name for c in card.classes], probabilities)

    def describe(self, result: ClassificationResult) -> list:
        probs = ", ".join(f"{n} {p:.3f}" for n, p in zip(result.class_names, result.probabilities))
        return [f"top class {result.top_class} ({probs})"]

    def write(self, result: ClassificationResult, base: Path) -> list:
        from nnmamba.io.tables import write_probabilities_json, write_probabilities_tsv

        json_suffix, tsv_suffix = self.suffixes
        return [write_probabilities_json(result, Path(f"{base}{json_suffix}")),
                write_probabilities_tsv(result, Path(f"{base}{tsv_suffix}"))]

    def encode(self, result: ClassificationResult):
        return {"class_names": list(result.class_names)}, {
            "probabilities": np.asarray(result.probabilities, np.float64)}

    def decode_wire(self, header, arrays, model, timings, read_geometry) -> ClassificationResult:
        return ClassificationResult(list(header["class_names"]), arrays["probabilities"], model, timings)

    def make_problem(self, card, cases, device, seed, sigma_mm, recipe, label_maps):
        from nnmamba.train.problems import ClassificationProblem

        return ClassificationProblem(card, cases, device, seed, recipe, label_maps)

    def answer(self, result: ClassificationResult):
        return result.probabilities

    def truth(self, case, card, manifest: dict):
        from nnmamba.train.data import class_of_case

        return class_of_case(case, [c.name for c in card.classes])

    def score(self, answer, truth, case, card, manifest: dict) -> dict:
        from nnmamba.evaluate import scoring

        return scoring.score_classification(answer, truth)

    def summarise(self, scores: list, rows: list, card) -> dict:
        from nnmamba.evaluate import scoring

        return scoring.summarise_classification(scores, rows, card)

    per_case_figure = ("per_case_accuracy", "accuracy")

    def headline(self, summary: dict) -> str:
        return f"accuracy {summary['accuracy']:.3f}"

    def baseline(self, card, data_dir, manifest: dict, atlas: str, template: str):
        return _MajorityBaseline(card, data_dir)

    def report_extras(self, card, manifest: dict, heldout: list, rows: list) -> dict:
        """case -> the model's native answer (truth, predicted, probabilities by class name)."""
        names = [c.name for c in card.classes]
        return {"native": {r["case"]: {"truth": names[r["model"]["truth"]],
                                       "predicted": names[r["model"]["predicted"]],
                                       "probabilities": dict(zip(names, np.round(r["model"]["probabilities"],
                                                                                 4).tolist()))}
                           for r in rows if r["group"] == "native"}}


TASK = ClassificationTask()
