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

from slicer_app import SlicerLikeApp  # noqa: E402

# An oblique grid: rotated 30 degrees about S and 10 about R, anisotropic spacing, off-centre origin.
def obliqueIjkToRas() -> np.ndarray:
    a, b = np.deg2rad(30), np.deg2rad(10)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    m = np.eye(4)
    m[:3, :3] = rz @ rx @ np.diag([1.5, 1.2, 2.5])
    m[:3, 3] = (-31.0, 12.5, 7.25)
    return m


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
