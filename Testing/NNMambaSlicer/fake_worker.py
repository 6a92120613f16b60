"""A worker connection and client that implement WorkerProtocols in memory, for the logic's tests.

The real worker is exercised in test_inference_logic_worker.py; these fakes let a test hold a
submit (a slow upload), see which jobs were cancelled and feed chosen events, without a process.
"""

from __future__ import annotations

import threading
from typing import Optional

from nnmamba.worker.protocol import Event, EventKind


class FakeClient:
    """Records submits and cancels; `events` is what the next `poll` returns. `uploadGate`, when
    given, holds every `submit` until it is set (a slow upload to a remote server)."""

    def __init__(self, models: Optional[list] = None, status: Optional[dict] = None,
                 uploadGate: Optional[threading.Event] = None) -> None:
        self.submitted, self.cancelled, self.events = [], [], []
        self.models = models or []
        self.statusReply = status or {}
        self.uploadGate = uploadGate
        self.submitThreads = []
        self.connected = True

    def submit(self, volume, tasks, models=None, options=None) -> str:
        self.submitThreads.append(threading.current_thread())
        if self.uploadGate is not None and not self.uploadGate.wait(30):
            raise TimeoutError("the test never released the upload")
        workerJobId = f"worker-{len(self.submitted) + 1}"
        self.submitted.append((workerJobId, volume, list(tasks), models, options))
        return workerJobId

    def poll(self, timeout: float = 0.0) -> list:
        events, self.events = self.events, []
        return events

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)
        self.events.append(Event(EventKind.CANCELLED, job_id, message="Cancelled."))

    def status(self, timeout: float = 30.0) -> dict:
        return dict(self.statusReply)

    def list_models(self, timeout: float = 30.0) -> list:
        return list(self.models)

    def close(self) -> None:
        self.connected = False


class FakeConnection:
    """A local (or, with `isLocal=False`, remote) worker that is 'started' on the first `client()`."""

    def __init__(self, client: Optional[FakeClient] = None, isLocal: bool = True) -> None:
        self.fakeClient = client or FakeClient()
        self.isLocal = isLocal
        self.started = False
        self.closed = 0

    @property
    def isStarted(self) -> bool:
        return self.started

    def client(self) -> FakeClient:
        self.started = True
        return self.fakeClient

    def currentClient(self) -> Optional[FakeClient]:
        return self.fakeClient if self.started else None

    def restart(self) -> None:
        self.close()
        self.client()

    def close(self) -> None:
        self.started = False
        self.closed += 1

    def describe(self) -> str:
        return "the in-memory test worker"

    def takeLogLines(self) -> list:
        return []
