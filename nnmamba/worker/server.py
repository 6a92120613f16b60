"""The worker server: websockets on one asyncio loop, jobs on the runner's thread.

Why websockets: pure Python with a small C speed-up (installs into Slicer's Python with pip),
binary frames (voxels travel as raw bytes), TLS through the standard `ssl` module, an HTTP
handshake where the token is checked before any frame is read, and a synchronous client that
the torch-free client library runs on a plain thread.

Every request carries the token twice over: in the handshake's `Authorization: Bearer` header
(a connection without it is refused with HTTP 401) and in every message header (checked with a
constant-time compare). A bad message gets an error back and the connection keeps serving;
a frame above `MAX_FRAME_BYTES` is refused by websockets itself (close code 1009), and the worker
keeps serving other connections.

Example:
    >>> server = WorkerServer(PredictorEngine(), token="s3cret", port=0)   # doctest: +SKIP
    >>> server.serve(on_ready=lambda host, port: print(port))              # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import hmac
import http
import logging
import os
import ssl
import time
from typing import Callable, Optional

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from nnmamba import __version__
from nnmamba.worker.framing import MessageAssembler, frames
from nnmamba.worker.protocol import (MAX_FRAME_BYTES, PROTOCOL_VERSION, TOKEN_HEADER, ErrorCode,
                                     Event, EventKind, MessageType, ProtocolError, Reply,
                                     decode_submit, encode_event, encode_reply)
from nnmamba.worker.runner import Engine, Job, JobRunner, QueueLimits
from nnmamba.worker.served_models import resolve_served_models

log = logging.getLogger(__name__)

DEFAULT_MAX_JOB_BYTES = 2 << 30


class _Client:
    """One connection: frames of one message must not interleave with another's."""

    def __init__(self, websocket: ServerConnection, number: int):
        self.websocket = websocket
        self.number = number
        self.send_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"client#{self.number}"


class WorkerServer:
    def __init__(self, engine: Engine, token: str, host: str = "127.0.0.1", port: int = 0,
                 ssl_context: Optional[ssl.SSLContext] = None, max_job_bytes: int = DEFAULT_MAX_JOB_BYTES,
                 idle_timeout: Optional[float] = None, progress_interval: float = 0.1,
                 model_lister: Optional[Callable[[], list]] = None,
                 queue_limits: Optional[QueueLimits] = None, allow_model_paths: bool = False):
        if not token:
            raise ValueError("the worker needs a non-empty token; every request must present it")
        self.engine = engine
        self.token = token
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.max_job_bytes = max_job_bytes
        self.idle_timeout = idle_timeout
        self.model_lister = model_lister
        # Only a worker started for one user (LocalWorker) lets clients name card files.
        self.allow_model_paths = allow_model_paths
        limits = queue_limits or QueueLimits(max_bytes=2 * max_job_bytes, max_bytes_per_client=max_job_bytes)
        self.runner = JobRunner(engine, self._emit_from_thread, progress_interval, limits)
        self._clients: set = set()
        self._client_count = 0
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        self._started = time.monotonic()
        self._last_activity = time.monotonic()

    # ------------------------------------------------------------------------------ lifecycle

    def serve(self, on_ready: Optional[Callable[[str, int], None]] = None) -> None:
        """Run until shutdown (a shutdown request, `request_shutdown()`, SIGTERM or idle timeout)."""
        asyncio.run(self._main(on_ready))

    def request_shutdown(self) -> None:
        """Thread-safe: stop serving soon."""
        if self._loop is not None and self._stop is not None:
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:
                pass  # the loop has already closed

    async def _main(self, on_ready) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.runner.start()
        try:
            import signal

            self._loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        except (NotImplementedError, RuntimeError, ImportError):
            pass  # Windows: the client's stop() kills the process tree instead
        async with serve(self._handle, self.host, self.port, ssl=self.ssl_context,
                         process_request=self._check_handshake, compression=None,
                         max_size=MAX_FRAME_BYTES, max_queue=64, ping_interval=20, ping_timeout=120,
                         server_header=f"nnmamba-worker/{__version__}") as server:
            port = next(iter(server.sockets)).getsockname()[1]
            self.port = port
            log.info("worker listening on %s://%s:%d (pid %d)", "wss" if self.ssl_context else "ws",
                     self.host, port, os.getpid())
            if on_ready is not None:
                on_ready(self.host, port)
            watcher = asyncio.create_task(self._watch_idle())
            await self._stop.wait()
            watcher.cancel()
            log.info("worker shutting down")
        await asyncio.to_thread(self.runner.stop, 10.0)

    async def _watch_idle(self) -> None:
        if not self.idle_timeout:
            return
        while True:
            await asyncio.sleep(min(1.0, self.idle_timeout / 4))
            if self._clients or not self.runner.idle():
                self._last_activity = time.monotonic()
            elif time.monotonic() - self._last_activity > self.idle_timeout:
                log.info("no client and no job for %.0f s: exiting", self.idle_timeout)
                self._stop.set()
                return

    # ------------------------------------------------------------------------------ connections

    def _check_handshake(self, connection, request):
        expected = f"Bearer {self.token}".encode()
        given = request.headers.get(TOKEN_HEADER, "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, expected):
            log.warning("refused a connection without the right token from %s", connection.remote_address)
            return connection.respond(http.HTTPStatus.UNAUTHORIZED,
                                      "nnmamba worker: missing or wrong token\n")
        return None

    async def _handle(self, websocket: ServerConnection) -> None:
        self._client_count += 1
        client = _Client(websocket, self._client_count)
        self._clients.add(client)
        assembler = MessageAssembler(self.max_job_bytes)
        log.debug("%s connected from %s", client, websocket.remote_address)
        try:
            async for frame in websocket:
                message = None
                try:
                    message = assembler.feed(frame)
                    if message is not None:
                        await self._dispatch(client, *message)
                except ProtocolError as e:
                    log.warning("%s: %s", client, e)
                    await self._send_protocol_error(client, e)
                except Exception as e:  # noqa: BLE001 - a bug in one request must not end the connection
                    log.exception("%s: request failed", client)
                    header = message[0] if message else {}
                    ids = [header.get(k) if isinstance(header.get(k), str) else None for k in ("job_id", "request_id")]
                    await self._send_protocol_error(client, ProtocolError(
                        ErrorCode.INTERNAL, f"the worker failed on this request ({type(e).__name__}: {e}); "
                                            f"this is a bug, its log has the details", *ids))
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(client)
            self._last_activity = time.monotonic()
            cancelled = self.runner.cancel_owner(client)
            log.debug("%s disconnected (%d of its jobs cancelled)", client, cancelled)

    async def _dispatch(self, client: _Client, header: dict, arrays: dict) -> None:
        self._last_activity = time.monotonic()
        job_id = header.get("job_id") if isinstance(header.get("job_id"), str) else None
        request_id = header.get("request_id") if isinstance(header.get("request_id"), str) else None
        if header.get("protocol") != PROTOCOL_VERSION:
            raise ProtocolError(ErrorCode.VERSION_MISMATCH,
                                f"the client speaks worker protocol {header.get('protocol')!r}, this worker "
                                f"{PROTOCOL_VERSION} (nnmamba {__version__}); use the same nnmamba version "
                                f"on both sides", job_id, request_id)
        token = header.get("token")
        if not isinstance(token, str) or not hmac.compare_digest(token.encode("utf-8", "replace"),
                                                                 self.token.encode()):
            raise ProtocolError(ErrorCode.UNAUTHORIZED, "the message has no token or a wrong one",
                                job_id, request_id)
        try:
            kind = MessageType(header.get("type"))
        except ValueError:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"unknown message type {header.get('type')!r:.100}; "
                                f"expected one of submit, cancel, status, list_models, shutdown, echo",
                                job_id, request_id) from None
        if kind is MessageType.SUBMIT:
            request = decode_submit(header, arrays)
            request.models = await asyncio.to_thread(resolve_served_models, request.models,
                                                     self.allow_model_paths, None, request.job_id)
            queued = self.runner.status()["queued"] + (1 if not self.runner.idle() else 0)
            self.runner.submit(Job(request, client))
            stage = f"queued behind {queued} job{'s' if queued != 1 else ''}" if queued else "queued"
            await self._send_event(client, Event(EventKind.PROGRESS, request.job_id, 0.0, stage))
        elif kind is MessageType.ECHO:
            await self._send_reply(client, Reply(request_id or "", True, {"echo": sorted(arrays)}, arrays=arrays))
        elif arrays:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"a {kind.value} message carries no arrays",
                                job_id, request_id)
        elif kind is MessageType.CANCEL:
            found = self.runner.cancel(str(job_id), client)
            if request_id:
                await self._send_reply(client, Reply(request_id, True, {"cancelling": found}))
        elif kind is MessageType.STATUS:
            await self._send_reply(client, Reply(request_id or "", True, self.status()))
        elif kind is MessageType.LIST_MODELS:
            await self._send_reply(client, await self._list_models(request_id or ""))
        elif kind is MessageType.SHUTDOWN:
            await self._send_reply(client, Reply(request_id or "", True, {"shutting_down": True}))
            self._stop.set()
        else:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"clients do not send {kind.value} messages",
                                job_id, request_id)

    def status(self) -> dict:
        status = {"protocol": PROTOCOL_VERSION, "version": __version__, "clients": len(self._clients),
                  "uptime_s": round(time.monotonic() - self._started, 1), "rss_mb": _rss_mb()}
        status.update(self.runner.status())
        status.update(self.engine.describe())
        return status

    async def _list_models(self, request_id: str) -> Reply:
        from nnmamba.errors import NNMambaError
        from nnmamba.worker.engine import model_summaries

        try:
            models = await asyncio.to_thread(self.model_lister or model_summaries)
        except NNMambaError as e:
            return Reply(request_id, False, None, e.code, str(e))
        if not self.allow_model_paths:   # a shared worker's clients name models, never its files
            models = [{k: v for k, v in m.items() if k != "path"} if isinstance(m, dict) else m for m in models]
        return Reply(request_id, True, models)

    # ------------------------------------------------------------------------------ sending

    def _emit_from_thread(self, job: Job, event: Event) -> None:
        """Called by the runner's thread; waits until the event is sent (keeps memory bounded)."""
        if job.owner not in self._clients or self._loop is None:
            return
        try:
            future = asyncio.run_coroutine_threadsafe(self._send_event(job.owner, event), self._loop)
        except RuntimeError:
            return  # the loop has closed: shutting down
        if event.kind.is_terminal:
            try:
                future.result(timeout=600)
            except Exception as e:  # noqa: BLE001 - the client went away; nothing to tell it
                log.debug("could not send %s of job %s: %s", event.kind.value, job.job_id, e)

    async def _send(self, client: _Client, header: dict, arrays: list) -> None:
        async with client.send_lock:
            try:
                for frame in frames(header, arrays):
                    await client.websocket.send(frame)
            except ConnectionClosed:
                pass

    async def _send_event(self, client: _Client, event: Event) -> None:
        try:
            header, arrays = encode_event(event)
        except (TypeError, ValueError) as e:
            log.error("job %s: result could not be encoded: %s", event.job_id, e)
            header, arrays = encode_event(Event(EventKind.ERROR, event.job_id, error_code=ErrorCode.INTERNAL.value,
                                                message=f"The worker could not send the result: {e}"))
        await self._send(client, header, arrays)

    async def _send_reply(self, client: _Client, reply: Reply) -> None:
        await self._send(client, *encode_reply(reply))

    async def _send_protocol_error(self, client: _Client, error: ProtocolError) -> None:
        if error.request_id and not error.job_id:
            await self._send_reply(client, Reply(error.request_id, False, None, error.code.value, str(error)))
        else:
            await self._send_event(client, Event(EventKind.ERROR, error.job_id,
                                                 error_code=error.code.value, message=str(error)))


def _rss_mb() -> Optional[float]:
    """Resident memory of this process in MiB (Linux /proc; None elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None
