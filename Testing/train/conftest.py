"""A tiny real training problem for the training tests, made from the embedded sample brain MR.

The sample (pyradiomics brain1, one patient's T1 post-contrast head MR) is resampled onto an
axis-aligned 8 mm grid; the ground truth is its head mask (intensity above the volume's mean), so
a small nnMambaSeg can learn it in a few dozen steps on CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnmamba.data import sample_volume_path
from nnmamba.inference.resampling import resample_channels, working_grid
from nnmamba.io.volumes import read_volume

from train_helpers import SPACING


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A prepared-data folder (manifest + one npz) holding the sample at 8 mm with a head mask."""
    root = tmp_path_factory.mktemp("prepared")
    volume = read_volume([sample_volume_path()])
    geometry, shape = working_grid(volume.geometry, volume.shape_kji, (SPACING,) * 3, "LPS")
    image = resample_channels(volume.array.astype(np.float32), volume.geometry, geometry, shape)[0]
    labels = (image > image.mean()).astype(np.uint8)
    (root / "tiny").mkdir()
    np.savez_compressed(root / "tiny" / "sample.npz", image=image, labels=labels,
                        origin=geometry.origin, spacing=geometry.spacing)
    manifest = {"splits": {"segmentation": {"grid": "tiny", "train": ["sample"], "heldout": ["sample"]}},
                "cases": {"sample": {"source": "nnmamba/data", "file": "sample_brain_mr.nrrd", "modality": "MR",
                                     "description": "embedded sample, 8 mm"}},
                "ground_truth": {"segmentation": "head mask: intensity above the volume mean"},
                "sources": {"nnmamba/data": {"package": "nnmamba", "licence": "BSD-3-Clause"}}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root
