"""Errors of the worker client (torch-free); each has the stable `code` the worker sends.

`error_for(code, message)` turns an ERROR event into the matching exception, so scripted
callers of `WorkerClient.run` catch the same classes as callers of the engine in-process.
"""

from __future__ import annotations

from nnmamba.errors import (BackendUnavailableError, Cancelled, InputError, ModelError, NNMambaError,
                            OutputExistsError)


class WorkerError(NNMambaError, RuntimeError):
    """The worker could not be reached, refused us, or failed a job."""

    code = "worker_error"

    def __init__(self, message: str, code: str = ""):
        super().__init__(message)
        if code:
            self.code = code


class WorkerDiedError(WorkerError):
    """The worker process stopped (or the connection to it broke) before the job finished."""

    code = "worker_died"


class WorkerAuthError(WorkerError):
    """The worker refused the token."""

    code = "unauthorized"


class WorkerBusyError(WorkerError):
    """The worker's queue (or this client's share of it) is full: submit again later."""

    code = "busy"


class WorkerTimeoutError(WorkerError, TimeoutError):
    """The worker did not answer in time (start-up, connection or a request)."""

    code = "timeout"


_BY_CODE = {cls.code: cls for cls in (InputError, ModelError, OutputExistsError, Cancelled,
                                      BackendUnavailableError)}


def error_for(code: str, message: str) -> NNMambaError:
    """The exception a job's ERROR event stands for."""
    if code in _BY_CODE:
        return _BY_CODE[code](message)
    if code == WorkerDiedError.code:
        return WorkerDiedError(message)
    if code == WorkerAuthError.code:
        return WorkerAuthError(message)
    if code == WorkerBusyError.code:
        return WorkerBusyError(message)
    return WorkerError(message, code=code or WorkerError.code)
