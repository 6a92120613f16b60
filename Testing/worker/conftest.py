"""Worker test fixtures: small real model cards, test volumes, a real worker process.

The cards are real nnMamba networks (the engine's), small enough for a 2-core CPU: 16 channels,
3 mm working grid, 32^3 patches, seeded random weights written with `nnmamba.models.save_model`.
Expected results come from the same `Predictor` run in this process, so the worker tests check
that what crosses the process boundary is exactly what the engine produced.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from worker_helpers import TEST_CARDS


@pytest.fixture(scope="session")
def worker_models_dir(tmp_path_factory) -> Path:
    import torch

    from nnmamba.model_card import validate_card_dict

    from nnmamba.models import build_for_card, save_model

    folder = tmp_path_factory.mktemp("worker-models")
    for seed, card in enumerate(TEST_CARDS):
        torch.manual_seed(seed)
        network = build_for_card(validate_card_dict(copy.deepcopy(card)), scan_backend="torch")
        save_model(copy.deepcopy(card), network, folder)
    return folder


@pytest.fixture(scope="session")
def reference_predictor():
    """The engine in this process, on one CPU thread like the worker (bitwise-equal results)."""
    import torch

    from nnmamba.inference import InferenceOptions, Predictor

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Predictor(InferenceOptions(device="cpu"))
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def local_worker(worker_models_dir):
    """One real worker process for a test module (CPU, one thread)."""
    from nnmamba.worker import LocalWorker

    worker = LocalWorker(device="cpu", threads=1, env={"NNMAMBA_MODELS_DIR": str(worker_models_dir)},
                         extra_args=["--max-job-mb", "64"])
    worker.start()
    yield worker
    worker.stop()
