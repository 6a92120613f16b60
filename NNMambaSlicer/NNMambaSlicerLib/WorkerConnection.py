"""Owns the worker the module talks to: a local `nnmamba serve` process tree, or a remote server.

The local worker runs in a Python of the user's choice (Slicer's own, or another environment with
torch/CUDA) with the extension's engine folder on its PYTHONPATH; the variables are set in the
child's environment only, never in Slicer's `os.environ`.
"""

from __future__ import annotations

import collections
import functools
import os
import shutil
import sys
from dataclasses import dataclass, field
from typing import Callable, Optional

from .WorkerProtocols import WorkerClientProtocol


def applicationStartupEnvironment() -> Optional[dict]:
    """The environment Slicer was started with, before its launcher set PYTHONHOME, PYTHONPATH,
    LD_LIBRARY_PATH, ... for its bundled Python; None outside the Slicer application.

    Another Python (a CUDA environment) started with Slicer's variables loads Slicer's libraries
    and standard library instead of its own, and cannot start."""
    import slicer

    if getattr(slicer, "app", None) is None:
        return None  # a plain Python (tests, scripts): its environment is the user's own
    return dict(slicer.util.startupEnvironment())


@functools.lru_cache(maxsize=1)
def slicerPython() -> str:
    """Slicer's Python interpreter: inside Slicer sys.executable is the application, PythonSlicer
    its interpreter. Looked up once (the panel asks several times a second)."""
    return shutil.which("PythonSlicer") or sys.executable


@dataclass
class WorkerSettings:
    """Where the worker runs. `remoteHost` empty = local (the default: nothing leaves the machine)."""

    pythonExecutable: str = ""        # empty: Slicer's own Python (PythonSlicer) or this interpreter
    device: str = "auto"              # "auto", "cpu", "cuda:0", ...
    remoteHost: str = ""
    remotePort: int = 0
    remoteToken: str = field(default="", repr=False)
    tlsCertificateAuthority: Optional[str] = None
    extraEnvironment: dict = field(default_factory=dict)
    threads: Optional[int] = None     # CPU threads of a local worker (None: torch's choice)
    modelsFolder: str = ""            # a local worker also looks for model cards here (first)

    @property
    def isRemote(self) -> bool:
        return bool(self.remoteHost)


class WorkerConnection:
    """Starts the worker on first use, restarts it, stops it (local: the whole process tree).

    Example:
        >>> connection = WorkerConnection(WorkerSettings(device="cpu"))
        >>> jobId = connection.client().submit(volume, ["segmentation"])
        >>> connection.close()
    """

    def __init__(self, settings: Optional[WorkerSettings] = None,
                 localWorkerFactory: Optional[Callable] = None,
                 remoteConnect: Optional[Callable] = None,
                 startupEnvironment: Callable[[], Optional[dict]] = applicationStartupEnvironment) -> None:
        self.settings = settings or WorkerSettings()
        self._localWorkerFactory = localWorkerFactory
        self._remoteConnect = remoteConnect
        self._startupEnvironment = startupEnvironment
        self._worker = None   # LocalWorker while local
        self._client: Optional[WorkerClientProtocol] = None
        # The local worker's output lines, filled by its reader thread, emptied by the panel's timer.
        self._logLines: collections.deque = collections.deque(maxlen=5000)

    def describe(self) -> str:
        """Which worker this is, in words for the panel."""
        s = self.settings
        if s.isRemote:
            return f"the worker at {s.remoteHost}:{s.remotePort}"
        return f"the local worker ({self.workerPython()}, device {s.device})"

    def takeLogLines(self) -> list:
        """The local worker's output lines since the last call (a remote server keeps its log)."""
        lines = []
        while self._logLines:
            lines.append(self._logLines.popleft())
        return lines

    @property
    def isLocal(self) -> bool:
        return not self.settings.isRemote

    @property
    def isStarted(self) -> bool:
        """A client exists and its worker is still there (a worker may die while idle)."""
        return self._client is not None and self._isHealthy()

    def _isHealthy(self) -> bool:
        connected = bool(getattr(self._client, "connected", True))
        return connected and (self._worker is None or self._worker.is_alive())

    def workerProcessId(self):
        """The local worker's process id (None when remote or not started)."""
        return getattr(self._worker, "pid", None) if self._worker is not None else None

    def currentClient(self) -> Optional[WorkerClientProtocol]:
        """The client of the worker started last (maybe dead: it then reports that), or None."""
        return self._client

    def client(self) -> WorkerClientProtocol:
        """The worker's client, starting (or restarting a dead) worker first; blocks while it starts."""
        if self._client is not None and not self._isHealthy():
            self.close()  # it died while nobody was waiting on it: start afresh
        if self._client is None:
            self._client = self._startLocal() if self.isLocal else self._connectRemote()
        return self._client

    def restart(self) -> None:
        """Stop whatever runs (killing a local worker's process tree) and start afresh."""
        self.close()
        self.client()

    def close(self) -> None:
        client, worker = self._client, self._worker
        self._client, self._worker = None, None
        if client is not None:
            try:
                client.close()
            except Exception:  # the worker may already be gone; closing must not fail on that
                pass
        if worker is not None:
            worker.stop()

    def workerPython(self) -> str:
        if self.settings.pythonExecutable:
            return self.settings.pythonExecutable
        return slicerPython()

    def workerEnvironment(self) -> dict:
        """Variables for the worker only; LocalWorker adds them to a copy of this environment and
        puts the `nnmamba` package this module imports on the worker's PYTHONPATH itself."""
        environment = {str(k): str(v) for k, v in self.settings.extraEnvironment.items()}
        if self.settings.modelsFolder:
            inherited = environment.get("NNMAMBA_MODELS_DIR", os.environ.get("NNMAMBA_MODELS_DIR", ""))
            environment["NNMAMBA_MODELS_DIR"] = os.pathsep.join(p for p in (self.settings.modelsFolder, inherited) if p)
        return environment

    def workerBaseEnvironment(self) -> Optional[dict]:
        """What a local worker's environment starts from: Slicer's own Python inherits this
        process's (None); a Python the user chose gets the environment Slicer was started with."""
        return self._startupEnvironment() if self.settings.pythonExecutable else None

    def _startLocal(self) -> WorkerClientProtocol:
        factory = self._localWorkerFactory
        if factory is None:
            try:
                from nnmamba.worker.local import LocalWorker
            except ImportError as error:  # the client needs websockets, which Slicer does not ship
                raise RuntimeError(f"the worker client cannot be loaded in this Python ({error}); install the "
                                   "worker's packages by pressing Apply in the module's panel, or with "
                                   "NNMambaSlicerLib.InstallLogic.InstallLogic().installMissing(...)") from error
            factory = LocalWorker
        python = self.workerPython()
        if os.path.sep in python and not os.path.isfile(python):
            raise RuntimeError(f"the worker's Python '{python}' does not exist; choose an existing Python "
                               "executable in the module's Advanced section, or leave it empty to use Slicer's.")
        worker = factory(python_executable=python, env=self.workerEnvironment(), device=self.settings.device,
                         threads=self.settings.threads, log_callback=self._logLines.append,
                         base_env=self.workerBaseEnvironment())
        try:
            worker.start()
            client = worker.client()
        except Exception:
            worker.stop()
            raise
        self._worker = worker
        return client

    def _connectRemote(self) -> WorkerClientProtocol:
        connect = self._remoteConnect
        if connect is None:
            try:
                from nnmamba.worker.client import WorkerClient
            except ImportError as error:  # websockets, which Slicer does not ship
                raise RuntimeError(f"the client for a remote server cannot be loaded in this Python ({error}); "
                                   "press Apply in the module's panel to install it (a small package), or "
                                   "NNMambaSlicerLib.InstallLogic.InstallLogic().installMissing(..., "
                                   "clientOnly=True)") from error
            connect = WorkerClient.connect
        s = self.settings
        if not s.remoteToken:
            raise RuntimeError(f"no token for the server {s.remoteHost}:{s.remotePort}; enter the token the "
                               "server printed when it started (it is kept in Slicer's settings, not the scene).")
        return connect(s.remoteHost, int(s.remotePort), s.remoteToken, tls_ca=s.tlsCertificateAuthority)
