"""Classification results as JSON (class -> probability) and a TSV table Slicer loads."""

from __future__ import annotations

import json
from pathlib import Path

from nnmamba.io.atomic import write_text_atomically
from nnmamba.results import ClassificationResult


def probabilities_dict(result: ClassificationResult) -> dict:
    return {
        "model": result.model,
        "top_class": result.top_class,
        "probabilities": {name: float(p) for name, p in zip(result.class_names, result.probabilities)},
    }


def probabilities_tsv(result: ClassificationResult) -> str:
    rows = ["class\tprobability"]
    rows += [f"{name}\t{float(p):.6f}" for name, p in zip(result.class_names, result.probabilities)]
    return "\n".join(rows) + "\n"


def write_probabilities_json(result: ClassificationResult, path: Path) -> Path:
    return write_text_atomically(Path(path), json.dumps(probabilities_dict(result), indent=2) + "\n")


def write_probabilities_tsv(result: ClassificationResult, path: Path) -> Path:
    return write_text_atomically(Path(path), probabilities_tsv(result))
