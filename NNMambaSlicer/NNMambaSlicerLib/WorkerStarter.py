"""Starts the worker off the GUI thread: importing torch in a new process, or reaching a server,
takes seconds, and stopping a local worker's process tree can too.

One start at a time. Its error is kept for the GUI thread to report to the jobs that waited for it;
a start the logic stopped waiting for (it was closed) stops the worker it made as soon as it has it.
"""

from __future__ import annotations

import logging
import threading
from typing import Optional


class WorkerStarter:
    """Example (what InferenceLogic does):
        >>> starter = WorkerStarter()
        >>> starter.start(connection)                     # returns at once
        >>> if not starter.busy and starter.error: ...    # later, from the poll timer
    """

    def __init__(self) -> None:
        self.error: Optional[BaseException] = None
        self._thread: Optional[threading.Thread] = None
        self._abandoned = False

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, connection, stopFirst: bool = False) -> None:
        """Start (or connect to) `connection`'s worker on a daemon thread, unless one is up or starting.
        `stopFirst`: stop what is left of the current worker first, on that thread too (a restart)."""
        if self.busy or (connection.isStarted and not stopFirst):
            return
        self.error = None
        self._abandoned = False

        def run() -> None:
            if stopFirst:
                try:
                    connection.close()
                except Exception as error:
                    logging.warning("NNMambaSlicer: stopping the worker failed: %s", error)
            try:
                connection.client()
            except Exception as error:  # reported to the waiting jobs by the logic, in the GUI thread
                self.error = error
                return
            if self._abandoned:  # the logic was closed while this start ran: stop the worker it made
                connection.close()

        self._thread = threading.Thread(target=run, name="nnmamba-worker-start", daemon=True)
        self._thread.start()

    def takeError(self) -> Optional[BaseException]:
        """The last start's error, once (None after a good start)."""
        error, self.error = self.error, None
        return error

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` s for a start under way; True when none is."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.busy

    def abandon(self, timeout: float) -> bool:
        """The logic is closing: wait up to `timeout` s; a start still running afterwards stops its
        worker once it has it. True when no start is left running."""
        self._abandoned = True
        return self.join(timeout)
