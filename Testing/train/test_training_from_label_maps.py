"""`nnmamba train` with the brain-structures recipe generates its batches from a FreeSurfer label map
on the device (CPU here), records data vs step time, and writes a card of the recipe's 15 labels;
and the batched normalisation and the ignore label behave."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from nnmamba.train import losses
from nnmamba.train.problems import normalize_batch
from nnmamba.train.synth.labels import BRAIN_STRUCTURES

REPO = Path(__file__).resolve().parents[2]
SPACING = 8.0


def _label_map_data(root: Path) -> Path:
    """A prepared-data folder holding one 8 mm FreeSurfer-coded map: white matter, cortex and a blob
    of each of the 15 structures."""
    shape = (24, 26, 24)
    k, j, i = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    codes = np.zeros(shape, np.int16)
    codes[((i - 12) / 9) ** 2 + ((j - 13) / 10) ** 2 + ((k - 12) / 8) ** 2 <= 1] = 3
    codes[((i - 12) / 7.5) ** 2 + ((j - 13) / 8.5) ** 2 + ((k - 12) / 6.5) ** 2 <= 1] = 2
    for n, (code, _) in enumerate(BRAIN_STRUCTURES):
        side = -3 if n % 2 == 0 else 3
        ci, cj, ck = 12 + side * (code != 16), 7 + (n // 2) * 1.5, 12
        codes[(i - ci) ** 2 + (j - cj) ** 2 + (k - ck) ** 2 <= 1.5] = code
    (root / "tiny8").mkdir(parents=True)
    np.savez_compressed(root / "tiny8" / "blobs.npz", codes=codes, origin=np.zeros(3), spacing=np.full(3, SPACING))
    manifest = {
        "splits": {"segmentation": {"grid": "tiny8", "train": [], "heldout": [], "label_maps": ["blobs"]}},
        "cases": {"blobs": {"source": "test", "file": "-", "modality": "labels", "description": "test label map"}},
        "segments": [{"label": n + 1, "name": name, "color": [0.5, 0.5, 0.5]}
                     for n, (_, name) in enumerate(BRAIN_STRUCTURES)],
        "ground_truth": {"segmentation": "generated"}, "sources": {"test": {"package": "-", "licence": "CC0"}}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_nnmamba_train_generates_from_a_label_map_and_records_the_data_time(tmp_path):
    data = _label_map_data(tmp_path / "prepared")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "nnmamba", "train", "--model", "brain-structures-seg", "--data", str(data),
               "--out", str(tmp_path / "run"), "--steps", "3", "--patch", "32", "32", "32", "--spacing",
               str(SPACING), str(SPACING), str(SPACING), "--channels", "4", "--device", "cpu",
               "--scan-backend", "torch", "--no-progress", "--log-every", "1"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "data" in done.stderr and "ms per step" in done.stderr
    card = json.loads((tmp_path / "run" / "brain-structures-seg" / "model.json").read_text())
    assert [item["name"] for item in card["labels"]] == [name for _, name in BRAIN_STRUCTURES]
    assert card["training"]["data"]["label_maps"][0]["case"] == "blobs"
    assert "generated from FreeSurfer label maps" in card["training"]["recipe"]["augmentation"]
    assert "ms per step" in card["training"]["hardware"]
    timing = json.loads((tmp_path / "run" / "rank0.json").read_text())["timing"]
    assert 0 < timing["data_ms_per_step"] < timing["step_ms_per_step"]


def test_batched_normalisation_equals_each_sample_on_its_own():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(3, 1, 10, 12, 8, generator=g) * 50 + 200
    images[0, :, :3] = 0
    images[2] = 0
    images[2, 0, 0, 0, :2] = 5.0            # under 1 % non-zero: all voxels are used
    for spec in ({"method": "zscore", "mask": "nonzero"}, {"method": "zscore", "mask": "all"},
                 {"method": "ct", "clip": [-100, 300], "mean": 40.0, "std": 80.0}):
        batched = normalize_batch(images, spec)
        for b in range(3):
            assert torch.allclose(batched[b], normalize_batch(images[b][None], spec)[0], atol=1e-5)


def test_ignored_voxels_count_in_neither_dice_nor_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 6, 6, 6, generator=g)
    target = torch.randint(0, 3, (2, 6, 6, 6), generator=g)
    ignored = target.clone()
    ignored[:, :2] = 255
    other = logits.clone()
    other[:, :, :2] = torch.randn(2, 3, 2, 6, 6, generator=g) * 10   # what the net says there is irrelevant
    a = losses.dice_ce_loss(logits, ignored, ignore_index=255)
    b = losses.dice_ce_loss(other, ignored, ignore_index=255)
    assert torch.allclose(a, b) and not torch.allclose(a, losses.dice_ce_loss(logits, target))
