"""Shared helpers of the worker tests: small real model cards, test volumes, result comparison."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nnmamba.volume import Geometry, Volume

_INPUT = {"channels": [{"name": "MR", "modality": "MR"}], "spacing_mm": [3.0, 3.0, 3.0],
          "orientation": "LPS", "patch_size": [32, 32, 32],
          "normalization": {"method": "zscore", "mask": "all"}}
_BASE = {"schema_version": 1, "trained": False, "input": _INPUT, "inference": {"mirror_axes": [0, 1, 2]},
         "description": "worker test model: seeded random weights", "weights": "set-by-save_model"}

TEST_CARDS = [
    dict(_BASE, name="test-seg", task="segmentation", network="nnMambaSeg",
         hyperparameters={"in_ch": 1, "channels": 16, "blocks": 2, "number_classes": 3},
         labels=[{"value": 1, "name": "Left thing", "color": [1.0, 0.0, 0.0]},
                 {"value": 2, "name": "Right thing", "color": [0.0, 0.5, 1.0],
                  "terminology": {"category": ["SCT", "123037004", "Anatomical Structure"],
                                  "type": ["SCT", "12738006", "Brain"]}}]),
    dict(_BASE, name="test-landmarks", task="landmarks", network="nnMambaLandmark",
         hyperparameters={"in_ch": 1, "channels": 16, "blocks": 2, "number_landmarks": 3},
         landmarks=[{"name": "AC", "description": "anterior commissure"},
                    {"name": "PC", "description": "posterior commissure"},
                    {"name": "GEN", "description": "genu"}]),
    dict(_BASE, name="test-cls", task="classification", network="nnMambaEncoder",
         hyperparameters={"in_ch": 1, "channels": 16, "blocks": 2, "number_classes": 3},
         classes=[{"name": "T1w", "description": "T1"}, {"name": "T2w", "description": "T2"},
                  {"name": "FLAIR", "description": "FLAIR"}]),
]
TASK_MODEL = {"segmentation": "test-seg", "landmarks": "test-landmarks", "classification": "test-cls"}


def model_paths(models_dir: Path, tasks) -> dict:
    """task -> path of the test card for it (wherever save_model put the card in `models_dir`)."""
    cards = {}
    for path in models_dir.rglob("*.json"):
        name = json.loads(path.read_text(encoding="utf-8")).get("name")
        cards[name] = str(path)
    return {task: cards[TASK_MODEL[task]] for task in tasks}


def make_volume(shape_kji=(24, 28, 32), seed: int = 0, dtype=np.int16) -> Volume:
    """A blob on noise with an oblique, non-unit geometry (so any geometry slip shows)."""
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape_kji], indexing="ij")
    centre = rng.uniform(-0.3, 0.3, 3)
    blob = np.exp(-((k - centre[0]) ** 2 + (j - centre[1]) ** 2 + (i - centre[2]) ** 2) / 0.2)
    array = (1000 * blob + rng.normal(0, 50, shape_kji)).astype(dtype)
    angle = 0.3 + 0.1 * seed
    c, s = np.cos(angle), np.sin(angle)
    direction = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    geometry = Geometry(np.array([-90.5 + seed, 12.25, -33.125]), np.array([2.5, 2.25, 2.75]), direction)
    return Volume(array, geometry)


def assert_same_results(got: dict, expected: dict, points_atol_mm: float = 1e-6) -> None:
    """`points_atol_mm`: landmark points (and their confidences) may differ by this much."""
    assert set(got) == set(expected)
    for task, want in expected.items():
        have = got[task]
        assert type(have) is type(want), task
        assert have.model == want.model
        if task == "segmentation":
            assert have.labelmap.dtype == want.labelmap.dtype
            np.testing.assert_array_equal(have.labelmap, want.labelmap)
            for name in ("origin", "spacing", "direction"):
                np.testing.assert_array_equal(getattr(have.geometry, name), getattr(want.geometry, name))
            assert [(s.label, s.name, tuple(s.color), s.terminology) for s in have.segments] == \
                   [(s.label, s.name, tuple(s.color), s.terminology) for s in want.segments]
        elif task == "landmarks":
            assert have.names == want.names and have.descriptions == want.descriptions
            np.testing.assert_allclose(have.points_lps, want.points_lps, rtol=0, atol=points_atol_mm)
            np.testing.assert_allclose(have.confidence, want.confidence, rtol=0, atol=points_atol_mm)
        else:
            assert have.class_names == want.class_names
            np.testing.assert_allclose(have.probabilities, want.probabilities, rtol=0, atol=1e-6)
