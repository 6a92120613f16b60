"""Fixtures for the Slicer module's tests: a real slicer-core scene set up as the application does."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO_ROOT / "NNMambaSlicer"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))
sys.path.insert(0, str(Path(__file__).resolve().parent))

slicer = pytest.importorskip("slicer", reason="the slicer-core wheel is part of the test extra")

from slicer_app import SlicerLikeApp, obliqueIjkToRas  # noqa: E402

@pytest.fixture
def app() -> SlicerLikeApp:
    return SlicerLikeApp()


@pytest.fixture
def obliqueVolume(app):
    """A 24 x 20 x 16 (i, j, k) int16 volume on an oblique grid, voxel value = i + 100 j + 10000 k."""
    k, j, i = np.meshgrid(np.arange(16), np.arange(20), np.arange(24), indexing="ij")
    array = (i + 100 * j + 1000 * k).astype(np.int16)
    node = slicer.util.addVolumeFromArray(array, ijkToRAS=obliqueIjkToRas(), name="Oblique head")
    node.CreateDefaultDisplayNodes()
    return node
