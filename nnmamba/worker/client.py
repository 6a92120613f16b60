"""The worker client: submit jobs, poll events, cancel. torch-free (the Slicer module uses it).

One `WorkerClient` is one connection. A background thread receives the worker's messages and
queues events; `poll()` never blocks by default, so a Qt timer can call it. Every submitted job
ends with exactly one terminal event (RESULT, ERROR, CANCELLED or WORKER_DIED); if the
connection drops, each unfinished job gets WORKER_DIED with a message in plain words (and one
WORKER_DIED with `job_id=None` tells an idle client the worker is gone).

Example (a local worker; see `nnmamba.worker.local.LocalWorker`):
    >>> from nnmamba.worker.local import LocalWorker
    >>> with LocalWorker(device="cpu") as worker:                       # doctest: +SKIP
    ...     results = worker.client().run(volume, ["segmentation"])
    ...     results["segmentation"].labelmap.shape
Remote:
    >>> client = WorkerClient.connect("gpu-server", 8765, token, tls_ca="ca.pem")   # doctest: +SKIP
    >>> job = client.submit(volume, ["landmarks"])                                  # doctest: +SKIP
    >>> for event in client.poll(): ...                                             # doctest: +SKIP
"""

from __future__ import annotations

import collections
import inspect
import logging
import ssl
import threading
import time
import uuid
from typing import Callable, Iterable, Optional

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect as ws_connect

from nnmamba.volume import Volume
from nnmamba.worker.errors import (WorkerAuthError, WorkerDiedError, WorkerError, WorkerTimeoutError,
                                   error_for)
from nnmamba.worker.framing import MessageAssembler, frames
from nnmamba.worker.protocol import (MAX_FRAME_BYTES, TOKEN_HEADER, Event, EventKind, MessageType,
                                     ProtocolError, Reply, SubmitRequest, decode_event, decode_reply,
                                     encode_request, encode_submit)

__all__ = ["WorkerClient", "Event", "EventKind"]

log = logging.getLogger(__name__)

# websockets >= 17 asks callers that keep a connection open (not in a `with`) to say so.
_DIRECT_CONNECTION = {"legacy": True} if "legacy" in inspect.signature(ws_connect).parameters else {}
RECV_BUFSIZE = 1 << 20
# Results may be as large as the volume sent; the worker is trusted not to flood its client.
MAX_RESULT_BYTES = 64 << 30


class WorkerClient:
    """A connection to a running worker. Make one with `connect()` or `LocalWorker.client()`."""

    def __init__(self, websocket: ClientConnection, token: str,
                 describe_death: Optional[Callable[[], str]] = None):
        self._websocket = websocket
        if hasattr(websocket, "recv_bufsize"):
            # 64 KiB socket reads (websockets' default) cost twice the CPU of 1 MiB ones on volumes.
            websocket.recv_bufsize = RECV_BUFSIZE
        self._token = token
        self._describe_death = describe_death
        self._send_lock = threading.Lock()
        self._events: collections.deque = collections.deque()
        self._replies: dict = {}
        self._awaiting: set = set()
        self._changed = threading.Condition()
        self._pending_jobs: set = set()
        self._connected = True
        self._closing = False
        self._receiver = threading.Thread(target=self._receive_loop, name="nnmamba-worker-client", daemon=True)
        self._receiver.start()

    @classmethod
    def connect(cls, host: str, port: int, token: str, tls_ca: Optional[str] = None,
                tls: Optional[bool] = None, timeout: float = 10.0,
                describe_death: Optional[Callable[[], str]] = None) -> "WorkerClient":
        """Connect to a worker at host:port. TLS when `tls_ca` (a CA/cert PEM to trust) or `tls=True`."""
        use_tls = tls if tls is not None else tls_ca is not None
        ssl_context = None
        if use_tls:
            ssl_context = ssl.create_default_context(cafile=str(tls_ca) if tls_ca else None)
        uri = f"{'wss' if use_tls else 'ws'}://{host}:{int(port)}/"
        try:
            websocket = ws_connect(uri, additional_headers={TOKEN_HEADER: f"Bearer {token}"},
                                   ssl=ssl_context, compression=None, max_size=MAX_FRAME_BYTES,
                                   open_timeout=timeout, proxy=None, ping_interval=20, ping_timeout=120,
                                   close_timeout=5, max_queue=64, **_DIRECT_CONNECTION)
        except InvalidStatus as e:
            if e.response.status_code == 401:
                raise WorkerAuthError(f"the worker at {host}:{port} refused the token; use the token the "
                                      f"worker was started with") from None
            raise WorkerError(f"the server at {host}:{port} answered HTTP {e.response.status_code}; "
                              f"is it an nnmamba worker?") from e
        except ssl.SSLError as e:
            raise WorkerError(f"TLS with the worker at {host}:{port} failed ({e}); check the certificate "
                              f"(tls_ca) or whether the worker serves TLS") from e
        except TimeoutError as e:
            raise WorkerTimeoutError(f"no answer from a worker at {host}:{port} within {timeout:g} s") from e
        except (OSError, InvalidHandshake) as e:
            raise WorkerError(f"cannot connect to a worker at {host}:{port}: {e}; is it running, and are "
                              f"host and port right?") from e
        return cls(websocket, token, describe_death)

    # ------------------------------------------------------------------------------ jobs

    def submit(self, volume: Volume, tasks: Iterable[str], models: Optional[dict] = None,
               options: Optional[dict] = None) -> str:
        """Send a job; returns its id at once. Its events arrive through `poll()`."""
        tasks = [tasks] if isinstance(tasks, str) else list(tasks)
        job_id = uuid.uuid4().hex
        try:
            header, arrays = encode_submit(SubmitRequest(job_id, volume, tasks, models or {}, options or {}),
                                           self._token)
        except ValueError as e:
            raise ValueError(f"cannot submit this job: {e}") from e
        with self._changed:
            self._pending_jobs.add(job_id)
        try:
            self._send(header, arrays)
        except BaseException:
            with self._changed:   # never sent: no event of it may remain (the exception says it all)
                self._pending_jobs.discard(job_id)
                self._events = collections.deque(e for e in self._events if e.job_id != job_id)
            raise
        return job_id

    def poll(self, timeout: float = 0.0) -> list:
        """Events received so far (waits up to `timeout` s for the first one); never raises."""
        return self._take(lambda event: True, timeout)

    def cancel(self, job_id: str) -> None:
        """Ask the worker to stop a job; its CANCELLED (or, if it had finished, RESULT) event follows."""
        self._send(*encode_request(MessageType.CANCEL, self._token, job_id=job_id))

    def status(self, timeout: float = 30.0) -> dict:
        """The worker's state: engine, device, queue, jobs done, memory."""
        return self._request(MessageType.STATUS, timeout)

    def list_models(self, timeout: float = 30.0) -> list:
        """Summaries of the model cards the worker can run."""
        return self._request(MessageType.LIST_MODELS, timeout)

    def echo(self, arrays: dict, timeout: float = 120.0) -> dict:
        """Send arrays to the worker and get them back (checks and measures the link)."""
        return self._request(MessageType.ECHO, timeout, arrays=arrays, full_reply=True).arrays

    def shutdown(self, timeout: float = 10.0) -> None:
        """Ask the worker process to exit (it cancels its jobs), then close this connection."""
        self._closing = True
        try:
            self._request(MessageType.SHUTDOWN, timeout)
        finally:
            self.close()

    def run(self, volume: Volume, tasks: Iterable[str], models: Optional[dict] = None,
            options: Optional[dict] = None, progress: Optional[Callable[[float, str], None]] = None,
            timeout: Optional[float] = None) -> dict:
        """Submit and wait: the results by task; raises the job's error (InputError, ModelError...)."""
        job_id = self.submit(volume, tasks, models, options)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if remaining == 0.0:
                self.cancel(job_id)
                raise WorkerTimeoutError(f"job {job_id} did not finish within {timeout:g} s; it was cancelled")
            for event in self._take(lambda e: e.job_id == job_id, 1.0 if remaining is None else min(1.0, remaining)):
                if event.kind is EventKind.PROGRESS:
                    if progress is not None:
                        progress(event.fraction, event.stage)
                elif event.kind is EventKind.RESULT:
                    return event.results
                elif event.kind is EventKind.WORKER_DIED:
                    raise WorkerDiedError(event.message)
                else:
                    raise error_for(event.error_code or "", event.message)

    @property
    def pending_jobs(self) -> set:
        """Ids of submitted jobs without a terminal event yet."""
        with self._changed:
            return set(self._pending_jobs)

    @property
    def connected(self) -> bool:
        return self._connected

    def close(self) -> None:
        """Close the connection (the worker cancels this client's unfinished jobs)."""
        self._closing = True
        try:
            self._websocket.close()
        except Exception:  # noqa: BLE001 - closing a broken connection must not raise
            pass
        if threading.current_thread() is not self._receiver:
            self._receiver.join(timeout=5)

    def __enter__(self) -> "WorkerClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------ internals

    def _send(self, header: dict, arrays: list) -> None:
        if not self._connected:
            raise WorkerDiedError(self._death_message())
        try:
            with self._send_lock:
                for frame in frames(header, arrays):
                    self._websocket.send(frame)
        except ConnectionClosed as e:
            raise WorkerDiedError(self._death_message()) from e

    def _request(self, kind: MessageType, timeout: float, arrays: Optional[dict] = None,
                 full_reply: bool = False):
        request_id = uuid.uuid4().hex
        with self._changed:
            self._awaiting.add(request_id)
        try:
            self._send(*encode_request(kind, self._token, arrays, request_id=request_id))
            deadline = time.monotonic() + timeout
            with self._changed:
                while request_id not in self._replies:
                    if not self._connected:
                        raise WorkerDiedError(self._death_message())
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise WorkerTimeoutError(f"the worker did not answer the {kind.value} request "
                                                 f"within {timeout:g} s")
                    self._changed.wait(remaining)
                reply: Reply = self._replies.pop(request_id)
        finally:
            with self._changed:
                self._awaiting.discard(request_id)
                self._replies.pop(request_id, None)
        if not reply.ok:
            raise error_for(reply.error_code or "", reply.message)
        return reply if full_reply else reply.data

    def _take(self, wanted: Callable[[Event], bool], timeout: float) -> list:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._changed:
            while True:
                taken = [e for e in self._events if wanted(e)]
                if taken or time.monotonic() >= deadline:
                    break
                self._changed.wait(deadline - time.monotonic())
            if taken:
                self._events = collections.deque(e for e in self._events if not wanted(e))
        return taken

    def _push(self, event: Event) -> None:
        with self._changed:
            if event.kind.is_terminal and event.job_id is not None:
                if event.job_id not in self._pending_jobs and event.kind is not EventKind.ERROR:
                    return  # a late duplicate for a job already finished (e.g. after WORKER_DIED)
                self._pending_jobs.discard(event.job_id)
            self._events.append(event)
            self._changed.notify_all()

    def _receive_loop(self) -> None:
        assembler = MessageAssembler(MAX_RESULT_BYTES)
        reason = ""
        try:
            while True:
                frame = self._websocket.recv()
                try:
                    message = assembler.feed(frame)
                except ProtocolError as e:
                    log.error("unreadable message from the worker: %s", e)
                    continue
                if message is None:
                    continue
                header, arrays = message
                if header.get("type") == MessageType.REPLY.value:
                    reply = decode_reply(header, arrays)
                    with self._changed:
                        if reply.request_id in self._awaiting:   # late replies are dropped
                            self._replies[reply.request_id] = reply
                            self._changed.notify_all()
                elif header.get("type") == MessageType.EVENT.value:
                    try:
                        self._push(decode_event(header, arrays))
                    except ProtocolError as e:
                        log.error("%s", e)
                        job_id = header.get("job_id")
                        self._push(Event(EventKind.ERROR, job_id, error_code="bad_message", message=str(e)))
        except ConnectionClosed as e:
            reason = f"connection closed (code {e.rcvd.code if e.rcvd else 'none'}" \
                     f"{': ' + e.rcvd.reason if e.rcvd and e.rcvd.reason else ''})"
        except Exception as e:  # noqa: BLE001 - any failure here means the connection is unusable
            reason = f"{type(e).__name__}: {e}"
        finally:
            self._on_disconnect(reason)

    def _on_disconnect(self, reason: str) -> None:
        with self._changed:
            self._connected = False
            pending = sorted(self._pending_jobs)
        if self._closing:
            for job_id in pending:
                self._push(Event(EventKind.CANCELLED, job_id, error_code="cancelled",
                                 message="The connection to the worker was closed by this client."))
        else:
            log.warning("lost the worker: %s", reason)
            message = self._death_message(reason)
            for job_id in pending or [None]:
                self._push(Event(EventKind.WORKER_DIED, job_id, error_code="worker_died", message=message))
        with self._changed:
            self._changed.notify_all()

    def _death_message(self, reason: str = "") -> str:
        if self._describe_death is not None:
            try:
                return self._describe_death()
            except Exception as e:  # noqa: BLE001 - a diagnostic must never hide the death itself
                log.debug("describe_death failed: %s", e)
        detail = f" ({reason})" if reason else ""
        return (f"The connection to the worker was lost{detail}. The worker may have stopped or the "
                f"network failed; restart the worker (or reconnect) and run the job again.")

