"""Asks the worker which models and devices it has, without the GUI thread ever waiting on it.

`start()` brings the worker up (off-thread, through the logic) when it is not running yet, then
a BackgroundTask sends the list-models and status requests; the panel's timer calls `tick()`,
which returns the answer once there is one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .BackgroundTask import BackgroundTask
from .DeviceChoices import DeviceChoices
from .ModelCatalog import ModelCatalog


@dataclass
class InquiryAnswer:
    """The worker's models and devices, or (`error` set) why it could not be asked."""

    catalog: Optional[ModelCatalog] = None
    devices: Optional[DeviceChoices] = None
    where: str = ""
    error: str = ""


class WorkerInquiry:
    """Example (the panel's refresh button, then its timer):
        >>> inquiry = WorkerInquiry(logic)
        >>> inquiry.start()
        >>> answer = inquiry.tick()      # None while it waits; then an InquiryAnswer
    """

    def __init__(self, logic, timeout: float = 30.0) -> None:
        self.logic = logic
        self.timeout = timeout
        self._awaitingStart = False
        self._task: Optional[BackgroundTask] = None

    @property
    def busy(self) -> bool:
        return self._awaitingStart or self._task is not None

    def start(self) -> None:
        """Ask the logic's current worker (started first if needed); does nothing while busy."""
        if self.busy:
            return
        if self.logic.connection.isStarted:
            self._ask()
        else:
            self.logic.startWorker()
            self._awaitingStart = True

    def tick(self) -> Optional[InquiryAnswer]:
        where = self.logic.connection.describe()
        if self._awaitingStart:
            if self.logic.isStartingWorker:
                return None
            self._awaitingStart = False
            if not self.logic.connection.isStarted:
                return InquiryAnswer(where=where, error=f"{where} could not be started: {self.logic.workerStartError}")
            self._ask()
        if self._task is None or not self._task.done:
            return None
        task, self._task = self._task, None
        if task.error is not None:
            return InquiryAnswer(where=where, error=f"{where} did not answer the models/status request: {task.error}")
        catalog, status = task.result
        return InquiryAnswer(catalog, DeviceChoices.fromStatus(status, where), where)

    def _ask(self) -> None:
        client, where, timeout = self.logic.connection.currentClient(), self.logic.connection.describe(), self.timeout
        self._task = BackgroundTask(lambda: (ModelCatalog.fromWorker(client, where, timeout),
                                             client.status(timeout=timeout)), "nnmamba-worker-inquiry")
