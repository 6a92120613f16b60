"""DeviceChoices: the devices of the worker that runs the job, not of the computer showing the panel."""

from __future__ import annotations

import time

import pytest

from NNMambaSlicerLib.DeviceChoices import DeviceChoices, isDevice
from NNMambaSlicerLib.WorkerConnection import WorkerConnection, WorkerSettings


def test_a_worker_with_two_gpus_offers_exactly_those_by_name():
    choices = DeviceChoices.fromStatus({"cuda_devices": ["NVIDIA H200", "NVIDIA L4"], "mps": False}, "the worker at gpu:1")
    assert choices.values() == ["auto", "cpu", "cuda:0", "cuda:1"]
    assert choices.items[3] == ("cuda:1", "GPU 1: NVIDIA L4") and choices.source == "the devices of the worker at gpu:1"


def test_an_apple_worker_offers_mps_and_a_cpu_only_worker_no_gpu():
    assert DeviceChoices.fromStatus({"cuda_devices": [], "mps": True}, "w").values() == ["auto", "cpu", "mps"]
    assert DeviceChoices.fromStatus({"cuda_devices": [], "mps": False}, "w").values() == ["auto", "cpu"]


def test_before_the_engine_reports_its_devices_the_usual_list_says_so():
    choices = DeviceChoices.fromStatus({"protocol": 1, "uptime_s": 0.2}, "w")
    assert choices.values() == ["auto", "cpu", "cuda:0"] and "has not reported" in choices.source  # no GPU 1-3 guessed


def test_device_names_the_worker_takes_are_recognised_and_others_are_not():
    assert all(isDevice(d) for d in ("auto", "cpu", "mps", "cuda", "cuda:7", "remote"))
    assert not any(isDevice(d) for d in ("gpu", "cuda:", "cuda:x", ""))


def realWorkerChoices() -> DeviceChoices:
    connection = WorkerConnection(WorkerSettings(device="cpu", threads=1))
    try:
        client = connection.client()
        deadline = time.monotonic() + 120
        while True:  # the engine imports torch after the worker listens
            status = client.status()
            if "cuda_devices" in status or time.monotonic() > deadline:
                return DeviceChoices.fromStatus(status, connection.describe())
            time.sleep(0.5)
    finally:
        connection.close()


@pytest.mark.slow
def test_a_real_worker_reports_its_devices_in_its_status():
    import torch

    expected = ["auto", "cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    choices = realWorkerChoices()
    assert "the devices of the local worker" in choices.source
    assert [v for v in choices.values() if v != "mps"] == expected
