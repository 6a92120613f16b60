"""The background worker: protocol, server (`nnmamba serve`), torch-free client.

Importing this package, `client`, `local`, `protocol`, `framing` or `errors` never imports torch;
only `engine` (used by the server process) does, and only when the first job needs it.
"""

from nnmamba.worker.client import WorkerClient
from nnmamba.worker.errors import WorkerAuthError, WorkerDiedError, WorkerError, WorkerTimeoutError
from nnmamba.worker.local import LocalWorker
from nnmamba.worker.protocol import ErrorCode, Event, EventKind

__all__ = ["WorkerClient", "LocalWorker", "Event", "EventKind", "ErrorCode", "WorkerError",
           "WorkerDiedError", "WorkerAuthError", "WorkerTimeoutError"]
