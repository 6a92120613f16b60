"""Slicer's own slice and 3D views of the three results, rendered offscreen (EGL/Mesa), checked by pixel.

The scene goes through the module's logic (addResultsToScene) exactly as a worker result would.
Set NNMAMBA_SCREENSHOTS_DIR to keep the pictures (tmp_path otherwise).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import slicer
import vtk

from nnmamba.results import ClassificationResult, LandmarkResult, SegmentationResult, SegmentInfo
from NNMambaSlicerLib.InferenceLogic import InferenceLogic
from NNMambaSlicerLib.VolumeConverter import VolumeConverter
from slicer_app import obliqueIjkToRas
from test_inference_logic_scene import NoWorker

pytestmark = pytest.mark.slow

RED, GREEN = (0.95, 0.15, 0.1), (0.1, 0.85, 0.2)


@pytest.fixture
def scene(app):
    """A head-like oblique volume, two segments, two landmarks inside them, and class probabilities."""
    k, j, i = np.meshgrid(np.arange(40), np.arange(64), np.arange(64), indexing="ij")
    head = ((i - 32) / 28.0) ** 2 + ((j - 32) / 30.0) ** 2 + ((k - 20) / 18.0) ** 2 < 1
    array = (head * 400 + 100 * np.sin(i / 5.0) * head).astype(np.int16)
    ijkToRas = obliqueIjkToRas()
    ijkToRas[:3, :3] /= np.linalg.norm(ijkToRas[:3, :3], axis=0)  # 1 mm voxels, still oblique
    volume = slicer.util.addVolumeFromArray(array, ijkToRAS=ijkToRas, name="Head")
    volume.CreateDefaultDisplayNodes()
    volume.GetDisplayNode().SetAutoWindowLevel(False)
    volume.GetDisplayNode().SetWindowLevel(800, 250)
    geometry = VolumeConverter.geometryOf(volume)
    labelmap = np.zeros(array.shape, np.uint8)
    labelmap[12:28, 14:30, 12:30] = 1
    labelmap[12:28, 34:50, 34:52] = 2
    landmarks = np.array([[21.0, 22.0, 20.0], [43.0, 42.0, 20.0]])  # (i, j, k), centres of the two boxes
    results = {
        "segmentation": SegmentationResult(labelmap, geometry, [SegmentInfo(1, "left structure", RED),
                                                                SegmentInfo(2, "right structure", GREEN)], "demo"),
        "landmarks": LandmarkResult(["L1", "R1"], ["left centre", "right centre"],
                                    geometry.index_to_physical(landmarks), np.array([0.9, 0.8]), "demo"),
        "classification": ClassificationResult(["normal", "abnormal"], np.array([0.25, 0.75]), "demo"),
    }
    outputs = InferenceLogic(NoWorker()).addResultsToScene(volume, results)
    return volume, outputs, geometry, landmarks, labelmap


def outputDir(tmp_path) -> Path:
    return Path(os.environ.get("NNMAMBA_SCREENSHOTS_DIR") or tmp_path)


def pixelOf(rasPoint, xyToRas) -> tuple:
    x, y, _, _ = np.linalg.inv(xyToRas) @ np.append(rasPoint, 1.0)
    return int(round(x)), int(round(y))


def test_slice_view_shows_each_segment_in_its_colour_where_the_segment_is(app, scene, tmp_path):
    volume, outputs, geometry, landmarks, labelmap = scene
    outputs["landmarks"][0].GetDisplayNode().SetVisibility(False)
    ijkToRas = geometry.ijk_to_ras_matrix()
    centre = (ijkToRas @ np.array([32, 32, 20, 1.0]))[:3]
    rgb, xyToRas = app.renderSlice(outputDir(tmp_path) / "test-scene-segmentation-axial.png", volume, rasOffset=centre)
    for (i, j, k), colour in (((21, 22, 20), RED), ((43, 42, 20), GREEN)):
        x, y = pixelOf((ijkToRas @ np.array([i, j, k, 1.0]))[:3], xyToRas)
        pixel = rgb[y - 2:y + 3, x - 2:x + 3].reshape(-1, 3).mean(axis=0)
        dominant = int(np.argmax(colour))
        assert np.argmax(pixel) == dominant, (pixel, colour)
        assert pixel[dominant] - np.delete(pixel, dominant).max() > 50, pixel
    x, y = pixelOf((ijkToRas @ np.array([32, 8, 20, 1.0]))[:3], xyToRas)  # inside the head, outside both
    grey = rgb[y, x].astype(int)
    assert max(grey) - min(grey) < 10 and max(grey) > 100


def test_slice_view_draws_a_glyph_at_each_landmark(app, scene, tmp_path):
    volume, outputs, geometry, landmarks, labelmap = scene
    markups = outputs["landmarks"][0]
    ijkToRas = geometry.ijk_to_ras_matrix()
    outputs["segmentation"][0].GetDisplayNode().SetVisibility(False)
    for index, point in enumerate(landmarks):  # a view through each point: 2D shows points on the slice
        ras = (ijkToRas @ np.append(point, 1.0))[:3]
        markups.GetDisplayNode().SetVisibility(False)
        without, xyToRas = app.renderSlice(tmp_path / "without.png", volume, rasOffset=ras,
                                           layoutName=f"Without{index}")
        markups.GetDisplayNode().SetVisibility(True)
        picture = outputDir(tmp_path) / "test-scene-landmarks-axial.png" if index == 0 else tmp_path / "with.png"
        withGlyphs, _ = app.renderSlice(picture, volume, rasOffset=ras, layoutName=f"With{index}")
        changed = np.abs(withGlyphs.astype(int) - without.astype(int)).sum(axis=2) > 30
        x, y = pixelOf(ras, xyToRas)
        assert changed[y - 12:y + 13, x - 12:x + 13].sum() > 20, f"no glyph near landmark {index} at pixel {(x, y)}"
        assert changed.sum() < 0.05 * changed.size  # glyphs and labels, not a redrawn picture


def test_three_d_view_shows_both_segment_surfaces_and_the_landmarks(app, scene, tmp_path):
    volume, outputs, geometry, landmarks, labelmap = scene
    markups = outputs["landmarks"][0]
    markups.GetDisplayNode().SetVisibility(False)
    rgb = app.renderThreeD(tmp_path / "surfaces.png", direction=(0.6, -1.0, 0.8))
    red = (rgb[..., 0] > 80) & (rgb[..., 0] > 2 * rgb[..., 1]) & (rgb[..., 0] > 2 * rgb[..., 2])
    green = (rgb[..., 1] > 80) & (rgb[..., 1] > 2 * rgb[..., 0]) & (rgb[..., 1] > 2 * rgb[..., 2])
    assert red.sum() > 2000 and green.sum() > 2000
    # the landmarks sit inside the boxes: with the surfaces translucent their glyphs must show up
    segmentationDisplay = outputs["segmentation"][0].GetDisplayNode()
    segmentationDisplay.SetOpacity3D(0.3)
    markups.GetDisplayNode().SetVisibility(True)
    withMarkups = app.renderThreeD(outputDir(tmp_path) / "test-scene-segmentation-3d.png", direction=(0.6, -1.0, 0.8))
    markups.GetDisplayNode().SetVisibility(False)
    withoutMarkups = app.renderThreeD(tmp_path / "no-markups.png", direction=(0.6, -1.0, 0.8))
    assert (np.abs(withMarkups.astype(int) - withoutMarkups.astype(int)).sum(axis=2) > 30).sum() > 50
