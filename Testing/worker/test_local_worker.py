"""LocalWorker's process lifecycle with real processes: death mid-job, restart, process tree, env."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nnmamba.worker import EventKind, LocalWorker, WorkerDiedError, WorkerError
from worker_helpers import assert_same_results, make_volume, model_paths

pytestmark = pytest.mark.skipif(os.name != "posix", reason="uses POSIX signals and /proc")


def _gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie waiting for a reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            return any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return True


def _wait_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.1)
    return False


def test_a_worker_killed_mid_job_is_reported_in_plain_words_and_a_restart_gives_a_correct_result(
        worker_models_dir, reference_predictor):
    with LocalWorker(device="cpu", threads=1) as worker:
        client = worker.client()
        models = model_paths(worker_models_dir, ["segmentation"])
        job_id = client.submit(make_volume((96, 96, 96), seed=4), ["segmentation"], models)
        deadline = time.monotonic() + 120
        while not any(": tile " in e.stage for e in client.poll(timeout=0.5)):
            assert time.monotonic() < deadline, "the job never started its tiles"
        os.kill(worker.pid, signal.SIGKILL)
        events = client.poll(timeout=10)
        assert [(e.kind, e.job_id) for e in events] == [(EventKind.WORKER_DIED, job_id)]
        assert "killed (SIGKILL)" in events[0].message and "Restart the worker" in events[0].message
        assert not client.connected and client.pending_jobs == set()
        with pytest.raises(WorkerDiedError, match="SIGKILL"):
            client.submit(make_volume(), ["segmentation"], models)

        worker.restart()
        volume = make_volume(seed=6)
        results = worker.client().run(volume, ["segmentation"], models, timeout=120)
        assert_same_results(results, reference_predictor.run(volume, ["segmentation"], models))


def test_an_idle_client_learns_that_its_worker_died():
    with LocalWorker(device="cpu", threads=1) as worker:
        client = worker.client()
        os.kill(worker.pid, signal.SIGTERM)
        events = client.poll(timeout=10)
        assert [(e.kind, e.job_id) for e in events] == [(EventKind.WORKER_DIED, None)]


def test_stop_ends_the_whole_process_tree(tmp_path):
    # A launcher that leaves a child behind, then becomes the worker: stop() must end both.
    child_pid_file = tmp_path / "child.pid"
    launcher = tmp_path / "python-with-child"
    launcher.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        sleep 300 &
        echo $! > {child_pid_file}
        exec {sys.executable} "$@"
        """))
    launcher.chmod(0o755)
    worker = LocalWorker(python_executable=str(launcher), device="cpu", threads=1).start()
    child = int(child_pid_file.read_text())
    assert not _gone(child)
    worker.stop()
    assert _wait_gone(child, 5), "the worker's child process survived stop()"
    assert not worker.is_alive()


def test_worker_settings_go_to_the_childs_environment_only(tmp_path):
    before = dict(os.environ)
    with LocalWorker(device="cpu", threads=1, env={"NNMAMBA_TEST_MARKER": "worker-only"}) as worker:
        environ = Path(f"/proc/{worker.pid}/environ").read_bytes().split(b"\0")
        cmdline = Path(f"/proc/{worker.pid}/cmdline").read_bytes()
        assert b"NNMAMBA_TEST_MARKER=worker-only" in environ
        assert b"OMP_NUM_THREADS=1" in environ
        assert f"NNMAMBA_WORKER_TOKEN={worker.token}".encode() in environ
        assert worker.token.encode() not in cmdline, "the token must not be visible on the command line"
        assert b"127.0.0.1" in cmdline
    assert dict(os.environ) == before


def test_a_worker_that_cannot_start_reports_its_output_and_exit_code(tmp_path):
    broken = tmp_path / "broken-python"
    broken.write_text("#!/bin/sh\necho 'no module named torch here' >&2\nexit 3\n")
    broken.chmod(0o755)
    with pytest.raises(WorkerError, match=r"exit code 3(.|\n)*no module named torch here"):
        LocalWorker(python_executable=str(broken)).start()


def test_a_missing_python_is_reported_with_its_path(tmp_path):
    with pytest.raises(WorkerError, match="does-not-exist"):
        LocalWorker(python_executable=str(tmp_path / "does-not-exist")).start()


def test_the_worker_exits_when_the_process_that_started_it_dies(tmp_path):
    script = ("import sys, time\n"
              "from nnmamba.worker import LocalWorker\n"
              "worker = LocalWorker(device='cpu', threads=1).start()\n"
              "print(worker.pid, flush=True)\n"
              "time.sleep(300)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        worker_pid = int(parent.stdout.readline())
        assert not _gone(worker_pid)
        parent.kill()
        parent.wait()
        assert _wait_gone(worker_pid, 15), "the orphaned worker kept running"
    finally:
        parent.kill()
        parent.stdout.close()


def test_stop_is_safe_twice_and_start_after_stop_gives_a_new_process():
    worker = LocalWorker(device="cpu", threads=1)
    worker.start()
    first = worker.pid
    assert worker.stop() == 0
    assert worker.stop() == 0
    worker.start()
    try:
        assert worker.pid != first and worker.client().status()["pid"] == worker.pid
    finally:
        worker.stop()


def test_a_worker_on_a_device_that_does_not_exist_says_so_on_status_and_on_every_job(worker_models_dir):
    from nnmamba.errors import BackendUnavailableError

    with LocalWorker(device="cuda:99", threads=1) as worker:
        client = worker.client()
        with pytest.raises(BackendUnavailableError, match="cuda:99"):
            client.run(make_volume(), ["classification"], model_paths(worker_models_dir, ["classification"]),
                       timeout=120)
        assert client.status()["engine"].startswith("failed:")
        assert "cuda:99" in client.status()["engine"]
