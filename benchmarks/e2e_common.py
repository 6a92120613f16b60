"""What benchmarks/predict_e2e.py and its fresh-process runs (benchmarks/first_run.py) share: the
CT-like volume and the random-weights card they run, `nnmamba predict` itself, and upstream's
pipeline (the same read/resample/sliding window/write around upstream nnMamba + mamba-ssm, with the
engine's previous CPU pre- and post-processing).
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path
from typing import Optional

SHAPE_KJI = (300, 512, 512)
SPACING = (0.75, 0.75, 1.0)
CONFIG = dict(in_ch=1, channels=32, blocks=3, number_classes=6)
STAGES = ("read", "resample", "network", "postprocess", "write")
CARD = {
    "schema_version": 1, "name": "bench-ct-seg", "task": "segmentation", "network": "nnMambaSeg",
    "description": "benchmark card: random weights", "hyperparameters": CONFIG,
    "weights": "set-by-save_model", "trained": False,
    "input": {"channels": [{"name": "CT", "modality": "CT"}], "spacing_mm": [1.0, 1.0, 1.0],
              "orientation": "LPS", "patch_size": [128, 128, 128],
              "normalization": {"method": "ct", "clip": [-1000.0, 1500.0], "mean": 0.0, "std": 400.0}},
    "inference": {"mirror_axes": [0, 1, 2]},
    "labels": [{"value": v, "name": f"structure {v}", "color": [0.2 * v, 0.5, 1.0 - 0.2 * v]} for v in range(1, 6)],
    "training": None, "accuracy": None,
}


def need_simpleitk() -> bool:
    try:
        import SimpleITK  # noqa: F401
    except ImportError:
        print("benchmarks/predict_e2e.py needs SimpleITK (it reads the .nrrd and writes the .seg.nrrd, as "
              "`nnmamba predict` does): carry SimpleITK for this Python and put it on PYTHONPATH, e.g. "
              "`python3 -m pip install --no-index --target /tmp/site .whl/SimpleITK-*.whl` or the package "
              "unpacked: `tar xJf simpleitk-*-site.tar.xz -C /tmp/site`", file=sys.stderr)
        return False
    return True


def write_ct_volume(path: Path, shape_kji=SHAPE_KJI) -> None:
    """An int16 CT-like volume: air, a body ellipse of soft tissue with noise, a brighter 'spine'."""
    import numpy as np
    import SimpleITK as sitk

    rng = np.random.default_rng(0)
    k, j, i = np.ogrid[:shape_kji[0], :shape_kji[1], :shape_kji[2]]
    cj, ci = shape_kji[1] / 2, shape_kji[2] / 2
    body = ((j - cj) / (0.39 * shape_kji[1])) ** 2 + ((i - ci) / (0.47 * shape_kji[2])) ** 2 < 1.0
    spine = ((j - 1.48 * cj) / (0.05 * shape_kji[1])) ** 2 + ((i - ci) / (0.05 * shape_kji[2])) ** 2 < 1.0
    array = np.full(shape_kji, -1000, dtype=np.int16)
    array[np.broadcast_to(body, shape_kji)] = 40
    array[np.broadcast_to(spine, shape_kji)] = 700
    array += rng.normal(0, 20, size=shape_kji).astype(np.int16)
    array += (5 * np.sin(k / 7.0)).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    image.SetOrigin((-192.0, -192.0, -150.0))
    sitk.WriteImage(image, str(path), useCompression=False)


def write_card(folder: Path, patch: int):
    """The benchmark card with random weights (and random BatchNorm statistics) saved in `folder`;
    returns (the saved card, the network)."""
    import torch

    from gpu import randomise
    from nnmamba.model_card import validate_card_dict
    from nnmamba.models import build_for_card, save_model

    card = copy.deepcopy(CARD)
    card["input"]["patch_size"] = [patch] * 3
    torch.manual_seed(0)
    network = randomise(build_for_card(validate_card_dict(copy.deepcopy(card)), scan_backend="torch"))
    return save_model(card, network, folder), network


def predict_argv(volume_path: Path, card_path: Optional[Path], out: Path, precision: str, tta: bool,
                 device: str) -> list:
    """`nnmamba predict`'s arguments for one file; no card: every task with its shipped model."""
    argv = ["predict", "-i", str(volume_path), "-o", str(out), "--no-summary", "--overwrite",
            "--precision", precision, "--device", device]
    if card_path is not None:
        argv += ["--model", f"segmentation={card_path}", "--tasks", "segmentation"]
    if tta:
        argv.append("--tta")
    return argv


def run_upstream(volume_path: Path, card, upstream_net, out: Path, tta: bool, device: str = "cuda") -> dict:
    """The same pipeline with the CPU pre/post-processing of before and upstream's eager network;
    returns {"<stage>_s": seconds} for STAGES and "total_s"."""
    import numpy as np
    import torch

    from nnmamba.inference.normalization import normalize
    from nnmamba.inference.resampling import probabilities_to_labels, resample_channels, working_grid
    from nnmamba.inference.sliding_window import sliding_window
    from nnmamba.io import read_volume, write_results
    from nnmamba.results import SegmentationResult

    cuda = torch.device(device)
    times = {}
    start = last = time.perf_counter()

    def stage(name):
        nonlocal last
        if cuda.type == "cuda":
            torch.cuda.synchronize(cuda)
        now = time.perf_counter()
        times[f"{name}_s"] = now - last
        last = now

    volume = read_volume([volume_path])
    stage("read")
    geometry, shape = working_grid(volume.geometry, volume.shape_kji, card.spacing_mm, card.orientation)
    image = torch.from_numpy(normalize(resample_channels(volume.array, volume.geometry, geometry, shape),
                                       card.normalization))
    stage("resample")
    with torch.no_grad():
        scores = sliding_window(upstream_net, image, tuple(reversed(card.patch_size)), CONFIG["number_classes"],
                                overlap=0.5, tile_batch=2, device=cuda, stitch_device=cuda,
                                mirror_axes=card.mirror_axes if tta else ())
    stage("network")
    probabilities = torch.softmax(scores, dim=0).cpu().numpy()
    del scores
    labels = probabilities_to_labels(probabilities, geometry, volume.geometry, volume.shape_kji)
    labels[~np.isin(labels, [s.label for s in card.labels])] = 0
    stage("postprocess")
    write_results({"segmentation": SegmentationResult(labels, volume.geometry, list(card.labels), card.name)},
                  volume, out, "upstream", overwrite=True, summary=False)
    stage("write")
    times["total_s"] = time.perf_counter() - start
    return times


def read_labels(path: Path):
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
