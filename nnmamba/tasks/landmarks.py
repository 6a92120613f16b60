"""Landmarks: one heatmap per named point, the peak of each in LPS mm, written as Slicer markups JSON."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnmamba.landmark_settings import parse_landmark_decoding, parse_landmark_fit, parse_landmark_registration
from nnmamba.model_card import LandmarkSpec
from nnmamba.results import LandmarkResult
from nnmamba.tasks.base import TaskDefinition
from nnmamba.volume import Geometry


class _TemplateBaseline:
    """The template's ground-truth points, answered for every case."""

    def __init__(self, card, data_dir, manifest: dict, template: str):
        from nnmamba.evaluate import baselines
        from nnmamba.train.data import load_case

        grid = manifest["splits"][card.task]["grid"]
        self.points = baselines.template_landmarks(load_case(data_dir, grid, template, manifest), card)
        self.description = baselines.DESCRIPTIONS["landmarks"].format(template=template)

    def answer(self, case):
        return self.points


class LandmarksTask(TaskDefinition):
    name = "landmarks"
    result_type = LandmarkResult
    suffixes = (".mrk.json",)
    networks = ("nnMambaLandmark",)

    def card_fields(self, card: dict, hyperparameters: dict, require, fail) -> dict:
        landmarks = []
        for item in require(card, "landmarks", list):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise fail(f"each landmark needs a 'name', got {item!r}")
            landmarks.append(LandmarkSpec(item["name"], str(item.get("description", ""))))
        if hyperparameters.get("number_landmarks") != len(landmarks):
            raise fail(f"hyperparameters.number_landmarks is {hyperparameters.get('number_landmarks')!r} "
                       f"but the card lists {len(landmarks)} landmarks")
        inference = card.get("inference", {}) or {}
        try:
            decoding = parse_landmark_decoding(inference)
            fit = parse_landmark_fit(inference, len(landmarks))
            registration = parse_landmark_registration(inference)
        except ValueError as e:
            raise fail(str(e)) from None
        return {"landmarks": landmarks, "landmark_decoding": decoding, "landmark_fit": fit,
                "landmark_registration": registration}

    def output_names(self, card) -> list:
        return [lm.name for lm in card.landmarks]

    def out_channels(self, card) -> int:
        return len(card.landmarks)

    def decode(self, card, output, working_geometry: Geometry, volume) -> LandmarkResult:
        """(landmarks, Z, Y, X) score maps on the working grid -> points in LPS mm, confidences and
        descriptions, as the card declares (`nnmamba.inference.landmark_decoding`)."""
        from nnmamba.inference.landmark_decoding import decode_landmarks

        points_lps, confidence, descriptions = decode_landmarks(card, output, working_geometry, volume)
        return LandmarkResult([lm.name for lm in card.landmarks], descriptions, points_lps, confidence)

    def describe(self, result: LandmarkResult) -> list:
        order = np.argsort(-result.confidence)[:3]
        best = ", ".join(f"{result.names[n]} ({result.confidence[n]:.2f})" for n in order)
        return [f"{len(result.names)} landmarks; highest confidence: {best}"]

    def write(self, result: LandmarkResult, base: Path) -> list:
        from nnmamba.io.markups import write_markups

        return [write_markups(result, Path(f"{base}{self.suffixes[0]}"))]

    def encode(self, result: LandmarkResult):
        header = {"names": list(result.names), "descriptions": list(result.descriptions)}
        return header, {"points_lps": np.asarray(result.points_lps, np.float64),
                        "confidence": np.asarray(result.confidence, np.float64)}

    def decode_wire(self, header, arrays, model, timings, read_geometry) -> LandmarkResult:
        return LandmarkResult(list(header["names"]), list(header["descriptions"]), arrays["points_lps"],
                              arrays["confidence"], model, timings)

    def make_problem(self, card, cases, device, seed, sigma_mm, recipe, label_maps):
        from nnmamba.train.problems import LandmarkProblem

        return LandmarkProblem(card, cases, device, seed, sigma_mm=sigma_mm, recipe=recipe, label_maps=label_maps)

    def answer(self, result: LandmarkResult):
        return result.points_lps

    def truth(self, case, card, manifest: dict):
        return case.landmarks_lps

    def score(self, answer, truth, case, card, manifest: dict) -> dict:
        from nnmamba.evaluate import scoring

        return scoring.score_landmarks(answer, truth)

    def summarise(self, scores: list, rows: list, card) -> dict:
        from nnmamba.evaluate import scoring

        return scoring.summarise_landmarks(scores, rows, card)

    per_case_figure = ("per_case_mre_mm", "MRE mm")

    def headline(self, summary: dict) -> str:
        from nnmamba.evaluate.scoring import WITHIN_MM

        return f"MRE {summary['mre_mm']:.2f} mm, {100 * summary['within_4mm']:.0f}% <= {WITHIN_MM:g} mm"

    def baseline(self, card, data_dir, manifest: dict, atlas: str, template: str):
        return _TemplateBaseline(card, data_dir, manifest, template)


TASK = LandmarksTask()
