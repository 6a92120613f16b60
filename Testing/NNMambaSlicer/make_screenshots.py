"""Pictures for the README: the shipped models on the embedded sample, through a real worker, drawn by
Slicer's own views offscreen. Run: .venv/bin/python Testing/NNMambaSlicer/make_screenshots.py [out_dir]

Default output: Resources/Screenshots/. The pictures show whatever the shipped weights predict
(the model cards say whether they are trained).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(REPO_ROOT / "NNMambaSlicer")]

import numpy as np  # noqa: E402

from nnmamba.data import sample_volume_path  # noqa: E402
from NNMambaSlicerLib.InferenceLogic import InferenceLogic  # noqa: E402
from NNMambaSlicerLib.WorkerConnection import WorkerConnection, WorkerSettings  # noqa: E402
from slicer_app import SlicerLikeApp  # noqa: E402


def main(outDir: Path) -> int:
    app = SlicerLikeApp()
    volume = app.logics["Volumes"].AddArchetypeVolume(str(sample_volume_path()), "Sample brain MR")
    logic = InferenceLogic(WorkerConnection(WorkerSettings(device="cpu")))
    try:
        outputs = logic.run(volume, tasks=["segmentation", "landmarks", "classification"], timeout=1800,
                            whileWaiting=None)
    finally:
        logic.close()
    segmentation = outputs["segmentation"][0]
    landmarks = outputs["landmarks"][0]
    bounds = np.zeros(6)
    volume.GetRASBounds(bounds)
    centre = bounds.reshape(3, 2).mean(axis=1)
    landmarks.GetDisplayNode().SetVisibility(False)
    app.renderSlice(outDir / "sample-segmentation-axial.png", volume, rasOffset=centre, layoutName="Axial")
    app.renderThreeD(outDir / "sample-segmentation-3d.png", direction=(0.5, -1.0, 0.6))
    segmentation.GetDisplayNode().SetVisibility(False)
    landmarks.GetDisplayNode().SetVisibility(True)
    first = np.array(landmarks.GetNthControlPointPosition(0))
    app.renderSlice(outDir / "sample-landmarks-axial.png", volume, rasOffset=first, layoutName="Landmarks")
    table = outputs["classification"][0]
    rows = [(table.GetCellText(r, 0), table.GetCellText(r, 1)) for r in range(table.GetNumberOfRows())]
    print(f"wrote {outDir}; classification: {rows}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT / "Resources" / "Screenshots"))
