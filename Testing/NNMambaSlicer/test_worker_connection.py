"""WorkerConnection: the chosen models folder reaches the local worker only, its log reaches the panel."""

from __future__ import annotations

import os
import time

import pytest

from fake_worker import FakeClient
from model_folders import copyShippedClassifier
from NNMambaSlicerLib.ModelCatalog import ModelCatalog
from NNMambaSlicerLib.WorkerConnection import WorkerConnection, WorkerSettings


class RecordingLocalWorker:
    """Stands in for LocalWorker's lifecycle: keeps its arguments, prints two lines when started."""

    made = []

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs
        RecordingLocalWorker.made.append(self)

    def start(self):
        for line in ("worker listening on ws://127.0.0.1:1234", "engine ready"):
            self.kwargs["log_callback"](line)
        return self

    def client(self):
        return FakeClient()

    def is_alive(self) -> bool:
        return True

    def stop(self) -> None:
        pass


def test_the_models_folder_goes_to_the_workers_environment_not_slicers(monkeypatch):
    monkeypatch.setenv("NNMAMBA_MODELS_DIR", "/site/models")
    connection = WorkerConnection(WorkerSettings(modelsFolder="/my/models"), localWorkerFactory=RecordingLocalWorker)
    connection.client()
    env = RecordingLocalWorker.made[-1].kwargs["env"]
    assert env["NNMAMBA_MODELS_DIR"] == os.pathsep.join(["/my/models", "/site/models"])
    assert os.environ["NNMAMBA_MODELS_DIR"] == "/site/models"
    connection.close()


def test_the_local_workers_output_lines_are_handed_out_once():
    connection = WorkerConnection(WorkerSettings(), localWorkerFactory=RecordingLocalWorker)
    connection.client()
    assert connection.takeLogLines() == ["worker listening on ws://127.0.0.1:1234", "engine ready"]
    assert connection.takeLogLines() == []
    connection.close()


def test_the_connection_says_which_worker_it_is():
    remote = WorkerConnection(WorkerSettings(remoteHost="gpu-server", remotePort=8765, remoteToken="t"))
    assert remote.describe() == "the worker at gpu-server:8765"
    local = WorkerConnection(WorkerSettings(pythonExecutable="/envs/cuda/bin/python", device="cuda:1"))
    assert local.describe() == "the local worker (/envs/cuda/bin/python, device cuda:1)"


@pytest.mark.slow
def test_a_real_local_worker_lists_the_models_of_the_chosen_folder_and_streams_its_log(tmp_path):
    copyShippedClassifier(tmp_path, "chosen-folder-classifier")
    connection = WorkerConnection(WorkerSettings(device="cpu", threads=1, modelsFolder=str(tmp_path)))
    try:
        catalog = ModelCatalog.fromWorker(connection.client(), connection.describe(), timeout=120)
        assert "chosen-folder-classifier" in {m.name for m in catalog.forTask("classification")}
        deadline, lines = time.monotonic() + 60, []
        while not any("listening" in line for line in lines):
            assert time.monotonic() < deadline, f"no 'listening' line in the worker's output: {lines}"
            lines += connection.takeLogLines()
            time.sleep(0.1)
    finally:
        connection.close()
