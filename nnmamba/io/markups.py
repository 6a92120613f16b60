"""Landmark results as Slicer markups JSON (`.mrk.json`, schema v1.0.3, LPS coordinates)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nnmamba.io.atomic import write_text_atomically
from nnmamba.results import LandmarkResult

MARKUPS_SCHEMA = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
                  "Resources/Schema/markups-schema-v1.0.3.json#")


def markups_dict(result: LandmarkResult) -> dict:
    """One fiducial markup with a control point per landmark (label = name)."""
    points = []
    for n, (name, description, lps, confidence) in enumerate(zip(
            result.names, result.descriptions, np.asarray(result.points_lps, dtype=np.float64),
            np.asarray(result.confidence, dtype=np.float64))):
        text = f"{description} (confidence {confidence:.2f})" if description else f"confidence {confidence:.2f}"
        points.append({
            "id": str(n + 1),
            "label": str(name),
            "description": text,
            "associatedNodeID": "",
            "position": [float(v) for v in lps],
            "orientation": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0],
            "selected": True,
            "locked": True,
            "visibility": True,
            "positionStatus": "defined",
        })
    return {
        "@schema": MARKUPS_SCHEMA,
        "markups": [{
            "type": "Fiducial",
            "coordinateSystem": "LPS",
            "coordinateUnits": "mm",
            "locked": True,
            "fixedNumberOfControlPoints": False,
            "labelFormat": "%N-%d",
            "lastUsedControlPointNumber": len(points),
            "controlPoints": points,
            "measurements": [],
            "display": {
                "visibility": True,
                "opacity": 1.0,
                "color": [0.4, 1.0, 1.0],
                "selectedColor": [1.0, 0.5, 0.5],
                "propertiesLabelVisibility": True,
                "pointLabelsVisibility": True,
                "textScale": 3.0,
                "glyphType": "Sphere3D",
                "glyphScale": 2.0,
                "glyphSize": 5.0,
                "useGlyphScale": True,
            },
        }],
    }


def write_markups(result: LandmarkResult, path: Path) -> Path:
    return write_text_atomically(Path(path), json.dumps(markups_dict(result), indent=2) + "\n")
