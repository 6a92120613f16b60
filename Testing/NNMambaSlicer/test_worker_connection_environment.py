"""Which environment a local worker starts from: Slicer's own Python inherits Slicer's, another
Python gets the environment Slicer was started with (without its PYTHONHOME, LD_LIBRARY_PATH...)."""

from __future__ import annotations

import os
import sys

from nnmamba.worker.local import LocalWorker
from NNMambaSlicerLib.WorkerConnection import WorkerConnection, WorkerSettings, applicationStartupEnvironment

STARTUP = {"PATH": "/usr/bin", "HOME": "/home/user"}


class RecordingWorkerFactory:
    """Builds real LocalWorker objects (never started) and keeps them to look at."""

    def __init__(self) -> None:
        self.workers = []

    def __call__(self, **kwargs) -> LocalWorker:
        self.workers.append(LocalWorker(**kwargs))
        raise RuntimeError("not started in this test")


def workerFor(settings: WorkerSettings) -> LocalWorker:
    factory = RecordingWorkerFactory()
    connection = WorkerConnection(settings, localWorkerFactory=factory, startupEnvironment=lambda: dict(STARTUP))
    try:
        connection.client()
    except RuntimeError:
        pass
    return factory.workers[0]


def test_a_python_the_user_chose_starts_from_slicers_startup_environment():
    worker = workerFor(WorkerSettings(pythonExecutable=sys.executable, device="cpu"))
    assert worker.base_env == STARTUP


def test_slicers_own_python_inherits_this_processs_environment():
    worker = workerFor(WorkerSettings(device="cpu"))
    assert worker.base_env is None


def test_the_child_environment_is_built_on_the_base_environment_without_this_processs_variables(monkeypatch):
    monkeypatch.setenv("LD_LIBRARY_PATH", "/slicer/lib")
    monkeypatch.setenv("PYTHONHOME", "/slicer/lib/Python")
    worker = LocalWorker(python_executable="/opt/env/bin/python", base_env=STARTUP, env={"CUDA_VISIBLE_DEVICES": "1"})
    child = worker._child_env()
    assert "LD_LIBRARY_PATH" not in child and "PYTHONHOME" not in child
    assert child["PATH"] == "/usr/bin" and child["CUDA_VISIBLE_DEVICES"] == "1"
    assert child["PYTHONPATH"].split(os.pathsep)[0] == str(__import__("pathlib").Path(
        __import__("nnmamba").__file__).resolve().parent.parent)
    assert os.environ["LD_LIBRARY_PATH"] == "/slicer/lib"  # this process's environment is left alone


def test_outside_the_slicer_application_there_is_no_separate_startup_environment(app):
    assert applicationStartupEnvironment() is None  # slicer-core has no slicer.app
