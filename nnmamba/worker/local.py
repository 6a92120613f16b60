"""A worker process on this machine, owned by one object (torch-free; the Slicer module uses it).

`LocalWorker` starts `python -m nnmamba serve` with the Python you name (Slicer's own, or a CUDA
environment with mamba-ssm), on 127.0.0.1 and a free port, with a random token passed in the
child's environment (never on its command line, never an open port without auth). The child's
settings (threads, token, PYTHONPATH) go into the child's environment only; this process's
`os.environ` is never touched. The child runs in its own process group (session on POSIX), so
`stop()`/`kill()` end the whole tree; it also exits by itself when this process dies (its stdin,
a pipe from us, closes).

Example:
    >>> with LocalWorker(device="cpu", threads=2) as worker:     # doctest: +SKIP
    ...     client = worker.client()
    ...     job = client.submit(volume, ["classification"])
    ...     events = client.poll(timeout=1.0)
"""

from __future__ import annotations

import collections
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from nnmamba.worker.client import WorkerClient
from nnmamba.worker.errors import WorkerError, WorkerTimeoutError

log = logging.getLogger(__name__)

TOKEN_ENV = "NNMAMBA_WORKER_TOKEN"          # must equal nnmamba.commands.serve.TOKEN_ENV
READY_PREFIX = "NNMAMBA_WORKER_READY "      # must equal nnmamba.commands.serve.READY_PREFIX
# The queue bounds of a shared worker (`nnmamba serve`) protect it from its clients; the local
# worker's one client is the user's own Slicer, whose batches may be large.
LOCAL_QUEUE_JOBS = 100000
LOCAL_QUEUE_MB = 1 << 20
PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent.parent)


class LocalWorker:
    """Starts, watches and stops one local worker process.

    python_executable: the Python that runs the worker (needs torch; nnmamba itself is put on its
        path from this checkout, so client and worker always speak the same protocol).
    env: extra environment variables for the worker only (e.g. {"CUDA_VISIBLE_DEVICES": "1"}).
    base_env: the environment the worker starts from (default: this process's). An application
        that sets variables for its own bundled Python (3D Slicer: PYTHONHOME, LD_LIBRARY_PATH,
        ...) passes the environment it was started with when the worker runs another Python.
    device: "auto", "cpu", "cuda", "cuda:1".
    threads: CPU threads for torch (also sets OMP/MKL thread variables in the child).
    """

    def __init__(self, python_executable: str = sys.executable, env: Optional[dict] = None,
                 device: str = "auto", threads: Optional[int] = None, extra_args: Sequence[str] = (),
                 startup_timeout: float = 300.0, log_callback: Optional[Callable[[str], None]] = None,
                 log_lines: int = 200, base_env: Optional[dict] = None):
        self.python_executable = str(python_executable)
        self.env = dict(env or {})
        self.base_env = None if base_env is None else dict(base_env)
        self.device = device
        self.threads = threads
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.log_callback = log_callback
        self._log = collections.deque(maxlen=log_lines)
        self._process: Optional[subprocess.Popen] = None
        self._client: Optional[WorkerClient] = None
        self._extra_clients: list = []
        self._ready = threading.Event()
        self._ready_info: dict = {}
        self._reader: Optional[threading.Thread] = None
        self._token = ""
        self._lock = threading.RLock()

    # ------------------------------------------------------------------------------ lifecycle

    def start(self) -> "LocalWorker":
        """Start the process and wait until it listens (raises WorkerError with its log if it fails)."""
        with self._lock:
            if self.is_alive():
                return self
            if self._process is not None:
                _kill_group(self._process)  # a dead worker's leftover children, if any
                self._process.wait()
            for client in [self._client] + self._extra_clients:
                if client is not None:
                    client.close()
            self._client, self._extra_clients = None, []
            self._token = secrets.token_urlsafe(32)
            self._ready.clear()
            self._ready_info = {}
            self._log.clear()
            command = [self.python_executable, "-m", "nnmamba", "serve", "--host", "127.0.0.1", "--port", "0",
                       "--announce", "--exit-with-stdin", "--device", self.device,
                       # this worker serves one user, who may pick a card file in the panel
                       "--allow-model-paths",
                       # and who queues a whole scene's volumes at once (the panel submits every
                       # volume of a batch; it holds them all itself anyway): no "busy" for that
                       "--max-queued-jobs", str(LOCAL_QUEUE_JOBS), "--max-queued-mb", str(LOCAL_QUEUE_MB),
                       "--max-queued-mb-per-client", str(LOCAL_QUEUE_MB)]
            if self.threads:
                command += ["--threads", str(self.threads)]
            command += self.extra_args
            try:
                self._process = subprocess.Popen(command, env=self._child_env(), stdin=subprocess.PIPE,
                                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                 **_new_process_group())
            except OSError as e:
                raise WorkerError(f"cannot start the worker with {self.python_executable}: {e}; "
                                  f"check the Python executable path") from e
            self._reader = threading.Thread(target=self._read_output, args=(self._process,),
                                            name="nnmamba-worker-log", daemon=True)
            self._reader.start()
            self._wait_until_ready()
            log.info("worker started: pid %d, port %d", self._process.pid, self.port)
            return self

    def client(self) -> WorkerClient:
        """The worker's client (connected on first use; a new one after `restart()`)."""
        with self._lock:
            if self._client is None or not self._client.connected:
                self.start()
                self._client = self.new_client()
            return self._client

    def new_client(self) -> WorkerClient:
        """An extra connection to the same worker (closed by `stop()`)."""
        if not self.is_alive() or not self._ready.is_set():
            raise WorkerError("the worker is not running; call start() first")
        client = WorkerClient.connect("127.0.0.1", self.port, self._token, describe_death=self.describe_death)
        self._extra_clients.append(client)
        return client

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """Ask the worker to exit, then end its whole process tree. Returns its exit code."""
        with self._lock:
            process = self._process
            if process is None:
                return None
            clients = [c for c in [self._client] + self._extra_clients if c is not None]
            self._client, self._extra_clients = None, []
            for client in clients:
                client._closing = True  # the coming disconnect is ours, not a death
            if process.poll() is None and clients and clients[0].connected:
                try:
                    clients[0].shutdown(timeout=min(timeout, 5.0))
                except WorkerError:
                    pass
            for client in clients:
                client.close()
            if process.stdin is not None:
                try:
                    process.stdin.close()
                except OSError:
                    pass
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not exit within %g s: terminating its process group",
                            process.pid, timeout)
                _signal_group(process, signal.SIGTERM)
                try:
                    process.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    pass
            _kill_group(process)  # children the worker may have left behind
            code = process.wait()
            if self._reader is not None:
                self._reader.join(timeout=2)
            return code

    def kill(self) -> None:
        """End the whole process tree at once (a job that does not stop on cancel)."""
        with self._lock:
            if self._process is not None:
                _kill_group(self._process)
                self._process.wait()

    def restart(self) -> "LocalWorker":
        self.stop()
        return self.start()

    def is_alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process is not None else None

    @property
    def port(self) -> int:
        return int(self._ready_info["port"])

    @property
    def token(self) -> str:
        return self._token

    def log_tail(self, lines: int = 20) -> list:
        return list(self._log)[-lines:]

    def describe_death(self) -> str:
        """Plain words about why the worker is gone (for WORKER_DIED events)."""
        process = self._process
        if process is None:
            return "The worker is not running. Start it and run the job again."
        try:
            code = process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            return (f"The connection to the worker (pid {process.pid}) was lost although the process is "
                    f"still running. Restart the worker and run the job again.")
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            how = f"was killed ({name})"
            if -code == getattr(signal, "SIGKILL", 9):
                how += ": killed by the user or by the system when memory ran out"
        else:
            how = f"exited with code {code}"
        tail = "\n".join(self.log_tail(5))
        return (f"The worker process {how}. Restart the worker and run the job again."
                + (f"\nLast lines of its log:\n{tail}" if tail else ""))

    def __enter__(self) -> "LocalWorker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------------------ internals

    def _child_env(self) -> dict:
        env = dict(os.environ if self.base_env is None else self.base_env)
        if os.path.realpath(self.python_executable) != os.path.realpath(sys.executable):
            # These point at this process's Python; another interpreter must not inherit them.
            for name in ("PYTHONHOME", "PYTHONPATH", "PYTHONNOUSERSITE"):
                env.pop(name, None)
        path = [PACKAGE_PARENT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(path)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONIOENCODING"] = "utf-8"
        if self.threads:
            for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
                env[name] = str(self.threads)
        env.update({k: str(v) for k, v in self.env.items()})
        env[TOKEN_ENV] = self._token
        return env

    def _read_output(self, process: subprocess.Popen) -> None:
        for raw in iter(process.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            if not self._ready.is_set() and line.startswith(READY_PREFIX):
                try:
                    self._ready_info = json.loads(line[len(READY_PREFIX):])
                    self._ready.set()
                    continue
                except ValueError:
                    pass
            self._log.append(line)
            if self.log_callback is not None:
                try:
                    self.log_callback(line)
                except Exception:  # noqa: BLE001 - a broken log sink must not stop the reader
                    pass
        process.stdout.close()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while not self._ready.wait(0.1):
            if self._process.poll() is not None:
                self._reader.join(timeout=2)
                tail = "\n".join(self.log_tail(20))
                code = self._process.returncode
                self._process = None
                raise WorkerError(f"the worker exited during start-up (exit code {code}) using "
                                  f"{self.python_executable}.\nIts output:\n{tail}")
            if time.monotonic() > deadline:
                _kill_group(self._process)
                self._process.wait()
                self._process = None
                raise WorkerTimeoutError(f"the worker did not start within {self.startup_timeout:g} s; "
                                         f"its output:\n" + "\n".join(self.log_tail(20)))


def _new_process_group() -> dict:
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW}
    return {"start_new_session": True}


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    if os.name == "nt":
        process.terminate()
        return
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group(process: subprocess.Popen) -> None:
    if os.name == "nt":
        # taskkill is a console program: without CREATE_NO_WINDOW a console window flashes up.
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, check=False,
                       creationflags=subprocess.CREATE_NO_WINDOW)
        return
    _signal_group(process, signal.SIGKILL)
