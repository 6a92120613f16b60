"""A small real training case for the SegMamba / Taming Mambas tests, trained through the project's
training code (`nnmamba.train.loop.train`: its augmentation, Dice + CE, Adam, checkpoint, card).

Data: the embedded brain MR sample and its tumour mask (pyradiomics brain1, see data/README.md),
cropped around the tumour (16 x 64 x 128 voxels of 6.5 x 0.78 x 0.78 mm) and written as a prepared
data folder (manifest.json + one npz on an identity-direction grid), as scripts/prepare_data.py
writes them. The card resamples it to 6.5 x 3.125 x 3.125 mm (16 x 16 x 32 voxels) and trains on
patches of `patch_ijk`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnmamba import model_card
from nnmamba.data import sample_volume_path

LABEL_PATH = Path(__file__).parent / "data" / "brain1_label.nrrd"
# [k, j, i] crop of the 25 x 256 x 256 volume around the tumour (k 11..17, j 84..153, i 162..208)
CROP_START_KJI = (6, 88, 121)
CROP_SIZE_KJI = (16, 64, 128)
SPACING_IJK = [3.125, 3.125, 6.5]
NETWORKS = ("SegMamba", "TamingSegMamba", "BiSegMamba", "SegMambaSkip", "MultiSegMamba")


def assert_cards_accept_the_networks() -> None:
    """Model cards must be able to name every one of these networks (as segmentation models)."""
    missing = [name for name in NETWORKS if model_card.networks_of_tasks().get(name) != "segmentation"]
    assert not missing, f"model cards cannot name {missing}"


def write_tumour_data(root: Path) -> Path:
    """Write the prepared data folder to `root`; returns it."""
    image = sitk.ReadImage(str(sample_volume_path()))
    label = sitk.ReadImage(str(LABEL_PATH))
    if image.GetSize() != label.GetSize() or image.GetDirection() != label.GetDirection():
        raise RuntimeError("the sample volume and the tumour mask do not share a grid")
    crop = tuple(slice(start, start + size) for start, size in zip(CROP_START_KJI, CROP_SIZE_KJI))
    arrays = [sitk.GetArrayFromImage(v)[crop] for v in (image, label)]
    # Make the grid identity-direction (LPS axes): flip every axis whose direction is negative.
    direction = np.array(image.GetDirection()).reshape(3, 3)
    if not np.allclose(np.abs(direction), np.eye(3)):
        raise RuntimeError(f"expected an axis-aligned sample, got direction {direction.tolist()}")
    start_ijk = list(CROP_START_KJI[::-1])
    for axis_ijk, sign in enumerate(np.diag(direction)):
        if sign < 0:
            arrays = [np.flip(a, axis=2 - axis_ijk) for a in arrays]
            start_ijk[axis_ijk] += CROP_SIZE_KJI[2 - axis_ijk] - 1
    origin = np.array(image.TransformIndexToPhysicalPoint([int(s) for s in start_ijk]))
    (root / "tumour").mkdir(parents=True, exist_ok=True)
    np.savez_compressed(root / "tumour" / "brain1.npz", image=arrays[0].astype(np.float32),
                        labels=(arrays[1] > 0).astype(np.uint8), origin=origin,
                        spacing=np.array(image.GetSpacing()))
    manifest = {
        "splits": {"segmentation": {"grid": "tumour", "train": ["brain1"], "heldout": []}},
        "cases": {"brain1": {"source": "pyradiomics", "file": "data/brain1_image.nrrd + data/brain1_label.nrrd",
                             "modality": "MR", "description": "brain MR, crop around the tumour"}},
        "ground_truth": {"segmentation": "pyradiomics brain1 tumour mask"},
        "sources": {"pyradiomics": {"package": "pyradiomics==3.0.1", "licence": "BSD-3-Clause"}},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def tumour_card(network: str, patch_ijk=(32, 16, 16), **hyperparameters) -> dict:
    return {"schema_version": 1, "name": f"tumour-{network.lower()}", "task": "segmentation",
            "network": network, "hyperparameters": {"in_ch": 1, "number_classes": 2, **hyperparameters},
            "weights": "weights.safetensors", "trained": False,
            "input": {"channels": [{"name": "MR", "modality": "MR"}], "spacing_mm": SPACING_IJK,
                      "orientation": "LPS", "patch_size": list(patch_ijk),
                      "normalization": {"method": "zscore", "mask": "nonzero"}},
            "inference": {"mirror_axes": []},
            "labels": [{"value": 1, "name": "Tumour", "color": [0.9, 0.2, 0.2]}]}


def train_few_steps(tmp_path: Path, card: dict, steps: int = 6):
    """Train `card` for `steps` steps (batch 1, CPU, fp32, torch scan); returns the TrainResult."""
    from nnmamba.train.loop import TrainConfig, train

    data = write_tumour_data(tmp_path / "prepared")
    config = TrainConfig(card=card, data_dir=data, out_dir=tmp_path / "run", max_steps=steps, batch_size=1,
                         device="cpu", precision="fp32", scan_backend="torch", log_every=2,
                         progress_bar=False, seed=0, learning_rate=2e-3)  # the nnMamba paper's rate
    return train(config)


def losses_before_and_after(tmp_path: Path, card: dict, result) -> tuple:
    """The training loss of the initial and of the trained network on one fixed batch of the same
    problem: a per-step training loss jumps with what each random patch holds (a tumour or not), so
    "it learnt" is judged on the same inputs."""
    import torch

    from nnmamba.model_card import read_card
    from nnmamba.models import load_model
    from nnmamba.networks import build_network
    from nnmamba.train.data import load_cases
    from nnmamba.train.problems import make_problem

    cases = load_cases(tmp_path / "prepared", card["task"], "train")
    problem = make_problem(card, cases, torch.device("cpu"), seed=7)
    x, target = problem.batch(4)
    torch.manual_seed(0)   # as train() seeds before it builds the network it starts from
    initial = build_network(card["network"], scan_backend="torch", **card["hyperparameters"])
    trained = load_model(read_card(result.card_path), scan_backend="torch")
    with torch.no_grad():
        return tuple(float(problem.loss(network.train()(x), target)) for network in (initial, trained))
