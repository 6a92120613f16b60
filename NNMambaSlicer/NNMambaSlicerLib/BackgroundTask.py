"""One call run on a daemon thread, so the GUI thread never waits on a network, a process or pip.

The GUI thread starts it and, from a timer, asks `done`, then reads `result` or `error`; nothing
MRML or Qt may happen inside the call (those belong to the GUI thread).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional


class BackgroundTask:
    """Runs `function()` once, at construction.

    Example:
        >>> task = BackgroundTask(lambda: client.list_models(), "nnmamba-list-models")
        >>> ...                      # later, in a timer callback:
        >>> if task.done: models = task.result   # or show task.error
    """

    def __init__(self, function: Callable[[], Any], name: str) -> None:
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self._function = function
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` s; True when the call has ended."""
        self._thread.join(timeout)
        return self.done

    def _run(self) -> None:
        try:
            self.result = self._function()
        except Exception as error:  # handed to the GUI thread, which reports it
            self.error = error
