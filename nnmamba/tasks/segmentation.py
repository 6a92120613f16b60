"""Segmentation: one label per voxel, written as a `.seg.nrrd` Slicer reads as a segmentation."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from nnmamba.results import SegmentationResult, SegmentInfo
from nnmamba.tasks.base import TaskDefinition
from nnmamba.volume import Geometry


def _terminology(t, fail) -> Optional[dict]:
    if t is None:
        return None
    if not isinstance(t, dict):
        raise fail(f"terminology must be an object, got {t!r}")
    for part in ("category", "type"):
        triplet = t.get(part)
        if (not isinstance(triplet, list) or len(triplet) != 3
                or not all(isinstance(s, str) and s for s in triplet)):
            raise fail(f"terminology '{part}' must be [coding scheme, code value, meaning], got {triplet!r}")
    return {k: list(v) for k, v in t.items()}


def scored_structures(card, manifest: dict, case) -> list:
    """[(card label, name)] this case's ground truth has: the manifest's `scored_labels` (Colin27: AAL's
    structures) or, without it, every card structure the prepared labels name."""
    prepared = {s["name"] for s in manifest["segments"]}
    wanted = set(manifest["cases"][case.name].get("scored_labels", prepared))
    return [(s.label, s.name) for s in card.labels if s.name in wanted and s.name in prepared]


class _AtlasBaseline:
    """The atlas placed by coordinates, its codes turned into the card's labels."""

    def __init__(self, card, data_dir, manifest: dict, atlas: str):
        from nnmamba.evaluate import baselines
        from nnmamba.train.data import load_case

        self.atlas = load_case(data_dir, manifest["splits"][card.task]["grid"], atlas, manifest)
        self.code_to_label = baselines.atlas_code_to_card_label(card)
        self.description = baselines.DESCRIPTIONS["segmentation"].format(atlas=atlas)

    def answer(self, case):
        from nnmamba.evaluate import baselines

        return baselines.atlas_labels(self.atlas, case, self.code_to_label)


class SegmentationTask(TaskDefinition):
    name = "segmentation"
    result_type = SegmentationResult
    suffixes = (".seg.nrrd", ".volumes.tsv")
    networks = ("nnMambaSeg", "SegMamba", "TamingSegMamba", "BiSegMamba", "SegMambaSkip", "MultiSegMamba")

    def card_fields(self, card: dict, hyperparameters: dict, require, fail) -> dict:
        labels = []
        for item in require(card, "labels", list):
            label = item.get("value")
            if not isinstance(label, int) or label < 1:
                raise fail(f"label 'value' must be an integer >= 1 (0 is background), got {item!r}")
            color = item.get("color")
            if (not isinstance(color, list) or len(color) != 3
                    or not all(isinstance(c, (int, float)) and 0 <= c <= 1 for c in color)):
                raise fail(f"label {label} 'color' must be [r, g, b] in 0..1, got {color!r}")
            labels.append(SegmentInfo(label, str(item.get("name", f"label {label}")), tuple(color),
                                      _terminology(item.get("terminology"), fail)))
        values = [s.label for s in labels]
        if len(set(values)) != len(values) or not values:
            raise fail(f"labels must be non-empty with distinct values, got {values}")
        n_classes = hyperparameters.get("number_classes")
        # auxiliary classes: output channels after the labels that inference maps to background
        auxiliary = card.get("auxiliary_classes") or []
        if not isinstance(auxiliary, list) or [a.get("value") if isinstance(a, dict) else a for a in auxiliary] != \
                list(range(max(values) + 1, max(values) + 1 + len(auxiliary))):
            raise fail(f"auxiliary_classes must list the classes after the labels in order "
                       f"({max(values) + 1}, {max(values) + 2}, ...), got {auxiliary!r}")
        if n_classes != max(values) + 1 + len(auxiliary):
            raise fail(f"hyperparameters.number_classes is {n_classes!r} but the labels need "
                       f"{max(values) + 1 + len(auxiliary)} (background + values up to {max(values)}"
                       + (f" + {len(auxiliary)} auxiliary classes)" if auxiliary else ")"))
        return {"labels": labels}

    def output_names(self, card) -> list:
        return [s.name for s in card.labels]

    def out_channels(self, card) -> int:
        return card.hyperparameters["number_classes"]

    def decode(self, card, output, working_geometry: Geometry, volume) -> SegmentationResult:
        """(classes, Z, Y, X) scores on the working grid -> uint16 labels on the input's grid."""
        import numpy as np
        import torch

        from nnmamba.inference.device_resampling import resample_argmax

        probabilities = torch.softmax(output, dim=0)
        del output
        labels = resample_argmax(probabilities, working_geometry, volume.geometry, volume.shape_kji)
        del probabilities
        # channels without a card label -> background
        known = torch.zeros(card.hyperparameters["number_classes"], dtype=torch.int64, device=labels.device)
        for segment in card.labels:
            if 0 <= segment.label < known.numel():
                known[segment.label] = segment.label
        labels = known[labels]
        small = torch.uint8 if known.numel() <= 256 else torch.int32   # fewer bytes back over the bus
        labelmap = labels.to(small).cpu().numpy().astype(np.uint16)
        return SegmentationResult(labelmap, volume.geometry, list(card.labels))

    def describe(self, result: SegmentationResult) -> list:
        import numpy as np

        voxel_ml = float(np.prod(result.geometry.spacing)) / 1000.0
        counts = np.bincount(result.labelmap.ravel(), minlength=max(s.label for s in result.segments) + 1)
        found = [f"{s.name} {counts[s.label] * voxel_ml:.1f} mL" for s in result.segments if counts[s.label]]
        return [f"{len(found)} of {len(result.segments)} segments present: " + (", ".join(found) or "none")]

    def write(self, result: SegmentationResult, base: Path) -> list:
        from nnmamba.io.segmentation import write_segmentation
        from nnmamba.io.tables import write_segment_volumes_tsv

        return [write_segmentation(result, Path(f"{base}{self.suffixes[0]}")),
                write_segment_volumes_tsv(result, Path(f"{base}{self.suffixes[1]}"))]

    def encode(self, result: SegmentationResult):
        header = {"geometry": result.geometry.to_dict(),
                  "segments": [{"label": int(s.label), "name": s.name, "color": [float(c) for c in s.color],
                                "terminology": s.terminology} for s in result.segments]}
        return header, {"labelmap": result.labelmap}

    def decode_wire(self, header, arrays, model, timings, read_geometry) -> SegmentationResult:
        segments = [SegmentInfo(s["label"], s["name"], tuple(s["color"]), s.get("terminology"))
                    for s in header.get("segments", [])]
        return SegmentationResult(arrays["labelmap"], read_geometry(header["geometry"]), segments, model, timings)

    def make_problem(self, card, cases, device, seed, sigma_mm, recipe, label_maps):
        from nnmamba.train.problems import SegmentationProblem

        return SegmentationProblem(card, cases, device, seed, recipe, label_maps)

    def answer(self, result: SegmentationResult):
        return result.labelmap

    def check_manifest(self, manifest: dict) -> None:
        if "segments" not in manifest:
            raise ValueError("the manifest has no 'segments' table (prepared label value -> name): prepare the data "
                             "again with scripts/prepare_data.py")

    def truth(self, case, card, manifest: dict):
        from nnmamba.evaluate import scoring

        return scoring.prepared_to_card_labels(case.labels, manifest["segments"], card)

    def score(self, answer, truth, case, card, manifest: dict) -> dict:
        from nnmamba.evaluate import scoring

        return scoring.score_segmentation(answer, truth, scored_structures(card, manifest, case),
                                          case.geometry.spacing[::-1])

    def summarise(self, scores: list, rows: list, card) -> dict:
        from nnmamba.evaluate import scoring

        return scoring.summarise_segmentation(scores, rows, card)

    per_case_figure = ("per_case_mean_dice", "mean Dice")

    def headline(self, summary: dict) -> str:
        return "n/a" if summary["mean_dice"] is None else f"Dice {summary['mean_dice']:.3f}"

    def baseline(self, card, data_dir, manifest: dict, atlas: str, template: str):
        return _AtlasBaseline(card, data_dir, manifest, atlas)

    def report_extras(self, card, manifest: dict, heldout: list, rows: list) -> dict:
        return {"scored_labels": {c.name: [name for _, name in scored_structures(card, manifest, c)]
                                  for c in heldout}}


TASK = SegmentationTask()
