"""Landmark results as Slicer markups JSON (`.mrk.json`, schema v1.0.3, LPS coordinates); points
from Slicer's older markups CSV (`.fcsv`)."""

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


def read_fcsv(path: Path) -> tuple:
    """A Slicer markups .fcsv -> (points (n, 3) LPS mm, rows: one {column: text} per point).

    Columns are named by the file's `# columns =` line (Slicer's default order without one); RAS files
    (`# CoordinateSystem = 0` or `RAS`, Slicer's default) are converted to LPS.
    """
    header, rows = {}, []
    columns = ["id", "x", "y", "z", "ow", "ox", "oy", "oz", "vis", "sel", "lock", "label", "desc", "associatedNodeID"]
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            if "=" in line:
                key, value = line[1:].split("=", 1)
                header[key.strip()] = value.strip()
                if key.strip() == "columns":
                    columns = [c.strip() for c in value.split(",")]
            continue
        if line.strip():
            rows.append(dict(zip(columns, line.split(","))))
    try:
        points = np.array([[float(row[axis]) for axis in ("x", "y", "z")] for row in rows], dtype=np.float64)
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path}: not a markups .fcsv with numeric x, y, z columns ({e})") from None
    points = points.reshape(-1, 3)
    if header.get("CoordinateSystem", "0") in ("0", "RAS"):
        points[:, :2] *= -1  # RAS -> LPS
    return points, rows
