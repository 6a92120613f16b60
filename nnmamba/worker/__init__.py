"""The background worker: protocol, server (`nnmamba serve`), torch-free client.

Importing this package imports nothing: Slicer's Python has numpy but neither websockets nor torch,
and the Slicer module reaches `nnmamba.worker.protocol` / `errors` through this package. The names
below are loaded on first use (`from nnmamba.worker import WorkerClient` imports websockets then).
`client`, `local`, `protocol`, `framing` and `errors` never import torch; only `engine` (used by
the server process) does, and only when the first job needs it.
"""

from __future__ import annotations

import importlib

# name -> the submodule that defines it
_EXPORTS = {
    "WorkerClient": "client",
    "LocalWorker": "local",
    "Event": "protocol", "EventKind": "protocol", "ErrorCode": "protocol",
    "WorkerError": "errors", "WorkerDiedError": "errors", "WorkerAuthError": "errors",
    "WorkerTimeoutError": "errors", "WorkerBusyError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_EXPORTS))
