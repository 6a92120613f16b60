"""WorkerReadiness: Apply says what keeps the worker from starting, and never waits for a check itself."""

from __future__ import annotations

import sys
import time

import pytest

from NNMambaSlicerLib.InstallLogic import InstallLogic
from NNMambaSlicerLib.WorkerConnection import WorkerSettings
from NNMambaSlicerLib.WorkerReadiness import WorkerReadiness


class KnownPackages(InstallLogic):
    """InstallLogic's real checks, with Slicer's missing packages chosen by the test."""

    def __init__(self, missing, platform=None) -> None:
        super().__init__()
        self.missing = list(missing)
        self.platform = platform

    def missingRequirements(self, clientOnly: bool = False) -> list:
        return [r for r in self.missing if not clientOnly or r.startswith("websockets")]

    def platformProblem(self, *args, **kwargs):
        return self.platform


def tickUntilAnswer(readiness: WorkerReadiness, seconds: float = 60.0) -> str:
    deadline = time.monotonic() + seconds
    while (answer := readiness.tick()) is None:
        assert time.monotonic() < deadline, "the check never ended"
        time.sleep(0.02)
    return answer


def test_slicers_python_without_the_packages_points_at_the_install_step_and_not_apply():
    packages = KnownPackages(["torch>=2.1,<3", "websockets>=15.0"])
    readiness = WorkerReadiness(packages)
    reason = readiness.whyCannotStart(WorkerSettings())
    assert "torch>=2.1,<3, websockets>=15.0" in reason and "press Apply to install them" in reason
    assert readiness.installable(WorkerSettings())
    packages.missing = []
    readiness.refreshInstalled()
    assert readiness.whyCannotStart(WorkerSettings()) is None


def test_a_remote_server_needs_no_torch_here_but_the_client_package():
    remote = WorkerSettings(remoteHost="gpu", remotePort=1, remoteToken="t")
    assert WorkerReadiness(KnownPackages(["torch>=2.1,<3"])).whyCannotStart(remote) is None
    readiness = WorkerReadiness(KnownPackages(["torch>=2.1,<3", "websockets>=15.0"]))
    reason = readiness.whyCannotStart(remote)
    assert "remote server" in reason and "websockets>=15.0" in reason and "torch" not in reason
    assert readiness.installable(remote)


def test_an_intel_mac_slicer_is_sent_to_a_worker_python_and_apply_offers_no_install():
    readiness = WorkerReadiness(KnownPackages(["torch>=2.1,<3"], platform="This Slicer runs as Intel code"))
    assert readiness.whyCannotStart(WorkerSettings()) == "This Slicer runs as Intel code"
    assert not readiness.installable(WorkerSettings())


def test_another_python_is_checked_in_the_background_and_its_problem_is_kept(tmp_path):
    missing = str(tmp_path / "no-such-python")
    readiness = WorkerReadiness(KnownPackages([]))
    started = time.monotonic()
    assert readiness.whyCannotStart(WorkerSettings(pythonExecutable=missing)) == (
        f"Checking that '{missing}' can run the worker...")
    assert time.monotonic() - started < 0.5 and readiness.checking
    answer = tickUntilAnswer(readiness)
    assert answer.startswith("The worker cannot start: could not run") and missing in answer
    assert readiness.whyCannotStart(WorkerSettings(pythonExecutable=missing)) == answer
    readiness.recheck(missing)
    assert readiness.whyCannotStart(WorkerSettings(pythonExecutable=missing)).startswith("Checking")


@pytest.mark.slow  # the check imports torch in a subprocess (~5 s on 2 cores)
def test_a_python_that_can_run_the_worker_is_ready_once_checked():
    readiness = WorkerReadiness(KnownPackages([]))
    readiness.whyCannotStart(WorkerSettings(pythonExecutable=sys.executable))
    assert tickUntilAnswer(readiness) == ""
    assert readiness.whyCannotStart(WorkerSettings(pythonExecutable=sys.executable)) is None
