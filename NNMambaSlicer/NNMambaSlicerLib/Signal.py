"""A small pure-Python signal: Qt signals declared in Python misbehave under PythonQt."""

from __future__ import annotations

from itertools import count
from typing import Callable


class Signal:
    """Connect callables; `emit` (or calling the signal) calls them in connection order.

    Example:
        >>> progress = Signal()
        >>> connection = progress.connect(print)
        >>> progress.emit(0.5, "predicting")
        0.5 predicting
        >>> progress.disconnect(connection)
        True
    """

    def __init__(self) -> None:
        self._ids = count()
        self._slots: dict[int, Callable] = {}
        self._blocked = False

    def connect(self, slot: Callable) -> int:
        if not callable(slot):
            raise ValueError(f"a signal slot must be callable, got {slot!r}")
        connectionId = next(self._ids)
        self._slots[connectionId] = slot
        return connectionId

    def disconnect(self, connectionId: int) -> bool:
        return self._slots.pop(connectionId, None) is not None

    def disconnectAll(self) -> None:
        self._slots.clear()

    def blockSignals(self, blocked: bool) -> None:
        self._blocked = blocked

    def emit(self, *args, **kwargs) -> None:
        if self._blocked:
            return
        for slot in list(self._slots.values()):
            slot(*args, **kwargs)

    __call__ = emit
