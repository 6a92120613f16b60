"""BackgroundTask: the call runs off the calling thread; its result or its error comes back."""

from __future__ import annotations

import threading

from NNMambaSlicerLib.BackgroundTask import BackgroundTask


def test_the_call_runs_on_another_thread_and_its_result_is_kept():
    task = BackgroundTask(lambda: threading.current_thread().name, "nnmamba-test-task")
    assert task.join(5) and task.done
    assert task.result == "nnmamba-test-task" and task.error is None


def test_an_exception_is_kept_for_the_gui_thread_instead_of_being_lost():
    def fail():
        raise ConnectionRefusedError("no server at gpu:8765")

    task = BackgroundTask(fail, "nnmamba-test-task")
    assert task.join(5)
    assert isinstance(task.error, ConnectionRefusedError) and task.result is None


def test_join_gives_up_after_its_timeout_and_says_the_call_is_still_running():
    release = threading.Event()
    task = BackgroundTask(lambda: release.wait(30), "nnmamba-test-task")
    assert task.join(0.05) is False and not task.done
    release.set()
    assert task.join(5) and task.result is True
