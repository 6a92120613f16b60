"""A tiny prepared-data folder for the evaluation tests, built from scratch (no downloaded data).

One 4 mm grid holds, in scripts/prepare_data.py's format:
- `blobs`: an MR-like head (an ellipsoid) with two structures of their own intensity, labelled in the
  manifest's segment values (Left thalamus, Brainstem); held out for segmentation;
- `cvs_avg35_aparc_aseg`: the atlas label map the segmentation baseline places by coordinates, here the
  very structures of `blobs` in FreeSurfer codes, so the baseline is an oracle at the native pose;
- `mni2009c_t1w`: the landmark template; `points`: a held-out case with the template's points, so the
  template baseline is an oracle at the native pose;
- classification: MR / CT training cases (MR the majority) and one held-out MR case.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))
from tiny_models import write_tiny_models  # noqa: E402

SHAPE_KJI = (16, 16, 16)
SPACING = 4.0
ORIGIN = np.array([-30.0, -30.0, -30.0])
LANDMARKS_LPS = np.array([[-8.0, 4.0, 2.0], [6.0, -10.0, 0.0], [0.0, 8.0, -12.0]])


def head_with_structures(seed: int = 0) -> tuple:
    """(image [k, j, i] float32, structure mask values {0, 1 = thalamus-like, 2 = brainstem-like})."""
    k, j, i = np.meshgrid(*[np.arange(n) for n in SHAPE_KJI], indexing="ij")
    centre = (np.array(SHAPE_KJI) - 1) / 2.0
    r = np.sqrt(((k - centre[0]) / 7) ** 2 + ((j - centre[1]) / 6.5) ** 2 + ((i - centre[2]) / 6) ** 2)
    structures = np.zeros(SHAPE_KJI, np.uint8)
    structures[5:9, 4:8, 5:9] = 1
    structures[8:12, 8:12, 7:10] = 2
    image = np.where(r < 1.0, 200.0, 0.0) + 120.0 * (structures == 1) - 90.0 * (structures == 2)
    image += np.random.default_rng(seed).normal(0.0, 4.0, SHAPE_KJI) * (r < 1.0)
    return image.astype(np.float32), structures


def _save(folder: Path, name: str, **arrays) -> None:
    np.savez_compressed(folder / f"{name}.npz", origin=ORIGIN, spacing=np.full(3, SPACING), **arrays)


def write_prepared(root: Path) -> Path:
    """The tiny prepared-data folder (manifest.json + tiny4/*.npz) under `root`."""
    from nnmamba.train.synth.labels import BRAIN_STRUCTURES

    grid = root / "tiny4"
    grid.mkdir(parents=True)
    segments = [{"label": n + 1, "name": name} for n, (_, name) in enumerate(BRAIN_STRUCTURES)]
    value_of = {s["name"]: s["label"] for s in segments}
    image, structures = head_with_structures()
    labels = np.zeros(SHAPE_KJI, np.uint8)
    labels[structures == 1] = value_of["Left thalamus"]
    labels[structures == 2] = value_of["Brainstem"]
    _save(grid, "blobs", image=image, labels=labels)
    codes = np.where(structures == 1, 10, np.where(structures == 2, 16, 0)).astype(np.int16)  # FreeSurfer codes
    _save(grid, "cvs_avg35_aparc_aseg", codes=codes)
    _save(grid, "mni2009c_t1w", image=image, landmarks_lps=LANDMARKS_LPS)
    _save(grid, "points", image=head_with_structures(seed=1)[0], landmarks_lps=LANDMARKS_LPS)
    ct = np.where(image > 0, 40.0, -1000.0).astype(np.float32)
    for name, volume in {"ct_train": ct, "mr_train_a": image, "mr_train_b": head_with_structures(seed=2)[0],
                         "mr_heldout": head_with_structures(seed=3)[0]}.items():
        _save(grid, name, image=volume)
    mr = {"source": "test", "file": "-", "modality": "MR", "description": "synthetic head"}
    manifest = {
        "splits": {"segmentation": {"grid": "tiny4", "train": [], "label_maps": ["cvs_avg35_aparc_aseg"],
                                    "heldout": ["blobs"]},
                   "landmarks": {"grid": "tiny4", "train": ["mni2009c_t1w"], "heldout": ["points"]},
                   "classification": {"grid": "tiny4", "train": ["ct_train", "mr_train_a", "mr_train_b"],
                                      "heldout": ["mr_heldout"]}},
        "cases": {"blobs": mr, "points": mr, "mni2009c_t1w": mr, "mr_train_a": mr, "mr_train_b": mr, "mr_heldout": mr,
                  "ct_train": dict(mr, modality="CT", description="synthetic CT head"),
                  "cvs_avg35_aparc_aseg": {"source": "test", "file": "-", "modality": "labels",
                                           "description": "the structures of blobs, FreeSurfer codes"}},
        "ground_truth": {"segmentation": "the drawn structures", "landmarks": "the placed points",
                         "classification": "as written"},
        "segments": segments}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def write_cards(folder: Path) -> Path:
    """The tiny real cards (tiny-seg, tiny-landmarks, tiny-cls; random weights) under `folder`."""
    return write_tiny_models(folder)
