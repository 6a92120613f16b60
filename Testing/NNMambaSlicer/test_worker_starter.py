"""WorkerStarter: one start at a time off the calling thread; its error is handed over once; a start
abandoned by a closing logic stops the worker it made."""

from __future__ import annotations

import threading

from fake_worker import FakeConnection

from NNMambaSlicerLib.WorkerStarter import WorkerStarter


class SlowConnection(FakeConnection):
    """A worker whose start waits for the test (`gate`), or fails with `failure`."""

    def __init__(self, failure: Exception = None) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.failure = failure
        self.starts = 0

    def client(self):
        self.starts += 1
        self.gate.wait(10)
        if self.failure is not None:
            raise self.failure
        return super().client()


def test_a_start_runs_off_the_calling_thread_and_a_second_request_meanwhile_starts_nothing():
    connection, starter = SlowConnection(), WorkerStarter()
    starter.start(connection)
    starter.start(connection)
    assert starter.busy and not connection.isStarted
    connection.gate.set()
    assert starter.join(5) and connection.isStarted and connection.starts == 1


def test_a_failed_start_hands_its_error_over_once():
    connection, starter = SlowConnection(RuntimeError("no torch in that Python")), WorkerStarter()
    connection.gate.set()
    starter.start(connection)
    starter.join(5)
    assert str(starter.takeError()) == "no torch in that Python" and starter.takeError() is None


def test_a_start_abandoned_by_a_closing_logic_stops_its_worker_once_it_has_it():
    connection, starter = SlowConnection(), WorkerStarter()
    starter.start(connection)
    assert starter.abandon(0.05) is False  # still starting: the logic stops waiting
    connection.gate.set()
    starter.join(5)
    assert connection.closed == 1 and not connection.isStarted


def test_a_restart_stops_the_running_worker_first_on_its_own_thread():
    connection, starter = SlowConnection(), WorkerStarter()
    connection.gate.set()
    starter.start(connection)
    starter.join(5)
    starter.start(connection, stopFirst=True)
    starter.join(5)
    assert connection.closed == 1 and connection.isStarted and connection.starts == 2
