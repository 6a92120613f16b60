"""The worker's status lists its devices (what the Slicer panel offers): CUDA devices by name, MPS."""

from __future__ import annotations

import time

import pytest

from nnmamba.worker.local import LocalWorker


def engineStatus(worker: LocalWorker, seconds: float = 120.0) -> dict:
    """The status once the engine is up (it imports torch after the worker listens)."""
    client, deadline = worker.client(), time.monotonic() + seconds
    while True:
        status = client.status()
        if "cuda_devices" in status:
            return status
        assert time.monotonic() < deadline, f"the engine never reported its devices: {status}"
        time.sleep(0.5)


@pytest.mark.slow
def test_a_cpu_worker_reports_the_cuda_devices_torch_sees_and_whether_mps_is_there():
    import torch

    with LocalWorker(device="cpu", threads=1) as worker:
        status = engineStatus(worker)
    assert status["cuda_devices"] == [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    assert isinstance(status["mps"], bool)


@pytest.mark.gpu
def test_a_gpu_worker_names_every_gpu_of_its_machine():
    import torch

    with LocalWorker(device="cuda", threads=1) as worker:
        status = engineStatus(worker)
    assert len(status["cuda_devices"]) == torch.cuda.device_count() >= 1
    assert status["cuda_devices"][0] == torch.cuda.get_device_name(0)
