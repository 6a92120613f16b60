"""Task results as they cross the worker boundary: numpy only, no torch.

The engine's pipeline returns these; the worker sends them as binary arrays + a JSON header;
the Slicer module turns them into MRML nodes; `nnmamba.io` writes them to files.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from nnmamba.volume import Geometry


class Task(str, enum.Enum):
    SEGMENTATION = "segmentation"
    LANDMARKS = "landmarks"
    CLASSIFICATION = "classification"


@dataclass
class SegmentInfo:
    """One label of a segmentation model card."""

    label: int
    name: str
    color: tuple  # (r, g, b) in 0..1
    # e.g. {"category": ["SCT", "123037004", "Anatomical Structure"],
    #       "type": ["SCT", "12738006", "Brain"]} (coding scheme, code value, meaning)
    terminology: Optional[dict] = None


@dataclass
class SegmentationResult:
    labelmap: np.ndarray          # [k, j, i] integer labels on the input's grid
    geometry: Geometry            # exactly the input volume's geometry
    segments: list = field(default_factory=list)  # list[SegmentInfo], label 0 = background excluded
    model: str = ""
    timings: dict = field(default_factory=dict)   # stage -> seconds ("resample_s", "network_s", ...)


@dataclass
class LandmarkResult:
    names: list                   # list[str], one per landmark
    descriptions: list            # list[str]
    points_lps: np.ndarray        # (n, 3) physical LPS mm
    confidence: np.ndarray        # (n,) 0..1: peak height or softmax mass near the peak (the card's
                                  # decoding); a point placed by the template fit: its
                                  # detection's confidence x its agreement with the fit
    model: str = ""
    timings: dict = field(default_factory=dict)   # stage -> seconds ("resample_s", "network_s", ...)


@dataclass
class ClassificationResult:
    class_names: list             # list[str]
    probabilities: np.ndarray     # (n,) sums to 1
    model: str = ""
    timings: dict = field(default_factory=dict)   # stage -> seconds ("resample_s", "network_s", ...)

    @property
    def top_class(self) -> str:
        return self.class_names[int(np.argmax(self.probabilities))]
