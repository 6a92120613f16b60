"""On CUDA the predictor runs what the plan says: the checked fast copy replayed as CUDA graphs, with
post-processing on the GPU, and its results agree with the same predictor on the CPU.

Needs no SimpleITK (the GPU machine has none): the volume is built with numpy.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
from tiny_models import LANDMARK_CARD, SEG_CARD

from nnmamba.inference import InferenceOptions, Predictor
from nnmamba.inference.cuda_graph import GraphedNetwork
from nnmamba.inference.planned_network import TOLERANCE
from nnmamba.model_card import find_model
from nnmamba.volume import Geometry, Volume

pytestmark = pytest.mark.gpu


def _card(base: dict, name: str) -> dict:
    card = copy.deepcopy(base)
    card["name"] = name
    card["hyperparameters"]["channels"] = 16        # wide enough that every layer carries signal
    card["weights"] = f"{name}.safetensors"
    return card


@pytest.fixture(scope="module")
def gpu_cards(tmp_path_factory):
    from nnmamba.models import build_for_card, save_model, validate_card_dict

    folder = tmp_path_factory.mktemp("gpu_cards")
    paths = {}
    for n, base in enumerate((SEG_CARD, LANDMARK_CARD)):
        card = _card(base, f"gpu-{base['task']}")
        torch.manual_seed(n)
        network = build_for_card(validate_card_dict(copy.deepcopy(card)), scan_backend="torch")
        calibrate_batchnorm(network, oblique_head_tile())
        saved = save_model(card, network, folder)
        paths[base["task"]] = str(saved.path)
    return paths


def calibrate_batchnorm(network: nn.Module, tile: torch.Tensor) -> None:
    """BatchNorm statistics of `tile` itself (one forward in train mode): a random network's output then
    varies across the volume instead of one class winning everywhere, so agreement means something."""
    for m in network.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.momentum = None       # cumulative average: after one batch, exactly its statistics
            m.reset_running_stats()
    network.train()
    with torch.no_grad():
        network(tile)
    network.eval()


def oblique_head_tile() -> torch.Tensor:
    """(1, 1, 32, 32, 32) z-scored centre of `oblique_head`, the shape of one tile of the cards."""
    array = oblique_head().array[14:46, 19:51, 16:48]
    return torch.from_numpy((array - array.mean()) / array.std())[None, None].float()


def oblique_head(shape_kji=(60, 70, 64)) -> Volume:
    rng = np.random.default_rng(0)
    k, j, i = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape_kji], indexing="ij")
    r = np.sqrt(i ** 2 + j ** 2 + k ** 2)
    array = np.where(r < 0.9, 300.0, 0.0) + np.where(r < 0.6, -120.0, 0.0) + rng.normal(0, 5, shape_kji)
    c, s = np.cos(0.4), np.sin(0.4)
    direction = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return Volume(array.astype(np.float32), Geometry(np.array([-60.0, -70.0, -50.0]),
                                                     np.array([2.1, 1.9, 2.3]), direction))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_planned_fast_path_runs_on_cuda_and_agrees_with_the_cpu(gpu_cards, precision):
    volume = oblique_head()
    tasks = ["segmentation", "landmarks"]
    gpu = Predictor(InferenceOptions(device="cuda", precision=precision, tta=True))
    got = gpu.run(volume, tasks, gpu_cards)
    for task in tasks:
        planned = gpu.planned(find_model(gpu_cards[task]), {"fp32": torch.float32, "bf16": torch.bfloat16}[precision])
        assert planned.plan.fused_miccss and planned.plan.fold_batchnorm and planned.plan.cuda_graphs
        assert isinstance(planned._run, GraphedNetwork)
        assert 0 < planned.relative_error < TOLERANCE[planned.dtype]
        assert planned.tile_bytes and planned.tile_bytes > 0
        assert set(got[task].timings) == {"resample_s", "network_s", "postprocess_s"}
    cpu = Predictor(InferenceOptions(device="cpu", precision="fp32", tta=True)).run(volume, tasks, gpu_cards)
    labels, expected = got["segmentation"].labelmap, cpu["segmentation"].labelmap
    assert labels.shape == expected.shape == volume.shape_kji and labels.dtype == np.uint16
    assert len(np.unique(expected)) > 1          # else agreement would say nothing
    agreement = (labels == expected).mean()
    # bf16: a random network's classes are often close (CPU bf16 autocast agrees 97 % with fp32 here)
    assert agreement > (0.999 if precision == "fp32" else 0.95), agreement
    if precision == "fp32":
        # within a voxel of the 4 mm working grid; a random heatmap may have two near-equal peaks
        distance = np.linalg.norm(got["landmarks"].points_lps - cpu["landmarks"].points_lps, axis=1)
        assert np.sort(distance)[1] < 4.0, distance


def test_the_tile_batch_is_chosen_from_free_memory_and_capped(gpu_cards):
    from nnmamba.inference.planned_network import TILE_BATCH_CAP

    predictor = Predictor(InferenceOptions(device="cuda"))
    planned = predictor.planned(find_model(gpu_cards["segmentation"]), torch.bfloat16)
    free, _ = torch.cuda.mem_get_info()
    batch = planned.tile_batch_for(free)
    assert 1 <= batch <= TILE_BATCH_CAP
    assert planned.tile_batch_for(planned.tile_bytes) == 1
