"""resolve_device: "auto" takes CUDA, then an Apple GPU (MPS), then the CPU; a named device that is
not here is refused with the fix named."""

from __future__ import annotations

import pytest
import torch

from nnmamba.errors import BackendUnavailableError
from nnmamba.inference import predictor
from nnmamba.inference.predictor import resolve_device


def test_auto_is_the_cpu_on_a_machine_with_neither_cuda_nor_an_apple_gpu():
    if torch.cuda.is_available() or predictor._mps_available():
        pytest.skip("this machine has a GPU: the CPU-only answer cannot be observed here")
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_picks_the_apple_gpu_when_there_is_no_cuda(monkeypatch):
    # The hardware queries are the only thing replaced: this machine has no Apple GPU.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(predictor, "_mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")


def test_auto_prefers_cuda_over_an_apple_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(predictor, "_mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_mps_asked_for_where_there_is_none_is_refused_with_the_fix():
    if predictor._mps_available():
        pytest.skip("this machine has an Apple GPU")
    with pytest.raises(BackendUnavailableError, match="no Apple GPU .*use --device cpu"):
        resolve_device("mps")
