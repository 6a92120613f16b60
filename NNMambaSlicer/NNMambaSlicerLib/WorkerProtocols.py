"""The interfaces the logic needs from the worker side (`nnmamba.worker.client` implements them).

Typed as Protocols so the logic takes its connection in the constructor and never imports a
concrete worker (nor torch) itself.
"""

from __future__ import annotations

from typing import Optional, Protocol


class WorkerClientProtocol(Protocol):
    """What `nnmamba.worker.client.WorkerClient` offers; every call returns promptly."""

    def submit(self, volume, tasks: list, models: Optional[dict] = None,
               options: Optional[dict] = None) -> str: ...

    def poll(self, timeout: float = 0.0) -> list: ...

    def cancel(self, job_id: str) -> None: ...

    def status(self) -> dict: ...

    def list_models(self) -> list: ...

    def close(self) -> None: ...


class WorkerConnectionProtocol(Protocol):
    """Owns one worker (a local process tree or a remote server) and hands out its client."""

    @property
    def isLocal(self) -> bool: ...

    @property
    def isStarted(self) -> bool: ...

    def client(self) -> WorkerClientProtocol: ...

    def currentClient(self) -> Optional[WorkerClientProtocol]: ...

    def restart(self) -> None: ...

    def close(self) -> None: ...

    def describe(self) -> str: ...          # which worker, in words ("the worker at host:port")

    def takeLogLines(self) -> list: ...     # the worker's output lines since the last call
