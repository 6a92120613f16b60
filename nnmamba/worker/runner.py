"""The job queue of a worker: one thread runs jobs one after another on the engine.

torch-free itself; the engine (see `engine.PredictorEngine`) does the torch work. The runner
turns whatever a job does into events through one function, `_finish`, so every job ends with
exactly one terminal event (result, error or cancelled).

Example:
    >>> runner = JobRunner(engine, emit=lambda job, event: print(event.kind))   # doctest: +SKIP
    >>> runner.start(); runner.submit(Job(request, owner="client-1"))             # doctest: +SKIP
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

from nnmamba.errors import Cancelled, NNMambaError
from nnmamba.worker.protocol import ErrorCode, Event, EventKind, ProtocolError, SubmitRequest

log = logging.getLogger(__name__)


class Engine(Protocol):
    """What the runner needs from the inference side (the real one: engine.PredictorEngine)."""

    def warm_up(self) -> None: ...

    def run(self, request: SubmitRequest, progress: Callable[[float, str], None],
            cancel: threading.Event) -> dict: ...

    def describe(self) -> dict: ...


@dataclass(frozen=True)
class QueueLimits:
    """How much may wait in the queue: an authenticated client must not exhaust the server's
    memory by queueing jobs (each holds its volume until it runs). The running job is not counted.

    max_jobs: waiting jobs of all clients together; max_bytes: voxel bytes of all waiting jobs;
    max_bytes_per_client: voxel bytes of one client's (connection's) waiting jobs, so one client
    cannot take the whole queue. A job over any bound is refused as busy.
    """

    max_jobs: int = 32
    max_bytes: int = 4 << 30
    max_bytes_per_client: int = 2 << 30


@dataclass
class Job:
    request: SubmitRequest
    owner: object                       # the connection that submitted it; events go back there
    cancel: threading.Event = field(default_factory=threading.Event)
    submitted_at: float = field(default_factory=time.monotonic)

    @property
    def job_id(self) -> str:
        return self.request.job_id

    @property
    def nbytes(self) -> int:
        return int(getattr(self.request.volume.array, "nbytes", 0))


class JobRunner:
    """FIFO queue + one thread; `emit(job, event)` is called from that thread."""

    def __init__(self, engine: Engine, emit: Callable[[Job, Event], None],
                 progress_interval: float = 0.1, limits: QueueLimits = QueueLimits()):
        self.engine = engine
        self.limits = limits
        self.emit = emit
        self.progress_interval = progress_interval
        self._queue: collections.deque = collections.deque()
        self._known: set = set()               # ids of queued and running jobs
        self._running: Optional[Job] = None
        self._lock = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="nnmamba-jobs", daemon=True)
        self.engine_state = "starting"         # starting -> ready | failed: <why>
        self._engine_failure: Optional[BaseException] = None
        self.jobs_done = 0
        self.jobs_failed = 0
        self.jobs_cancelled = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel everything, let the running job stop, end the thread."""
        with self._lock:
            self._stopping = True
            for job in list(self._queue) + ([self._running] if self._running else []):
                job.cancel.set()
            self._lock.notify_all()
        if self.engine_state == "starting":
            return  # still importing torch: nothing to wait for (the thread is a daemon)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._stopping:
                raise ProtocolError(ErrorCode.CANCELLED, "the worker is shutting down", job_id=job.job_id)
            if job.job_id in self._known:
                raise ProtocolError(ErrorCode.BAD_MESSAGE, f"job id {job.job_id!r} is already queued or "
                                                           f"running; use a new id per job", job_id=job.job_id)
            self._check_room(job)
            self._known.add(job.job_id)
            self._queue.append(job)
            self._lock.notify_all()

    def _check_room(self, job: Job) -> None:
        """Raise `ProtocolError(BUSY)` when `job` would overfill the queue (call with the lock held)."""
        if len(self._queue) >= self.limits.max_jobs:
            raise ProtocolError(ErrorCode.BUSY, f"the worker is busy: {len(self._queue)} jobs are waiting, "
                                                f"its limit; submit again when one has finished",
                                job_id=job.job_id)
        waiting = sum(queued.nbytes for queued in self._queue)
        if waiting + job.nbytes > self.limits.max_bytes:
            raise ProtocolError(ErrorCode.BUSY, f"the worker is busy: its waiting jobs hold {waiting / 2**20:.1f} MiB "
                                                f"and this one {job.nbytes / 2**20:.1f} MiB, more than its limit of "
                                                f"{self.limits.max_bytes / 2**20:.1f} MiB; submit again when one "
                                                f"has finished", job_id=job.job_id)
        mine = sum(queued.nbytes for queued in self._queue if queued.owner == job.owner)
        if mine + job.nbytes > self.limits.max_bytes_per_client:
            raise ProtocolError(ErrorCode.BUSY,
                                f"the worker is busy: your waiting jobs hold {mine / 2**20:.1f} MiB and this "
                                f"one {job.nbytes / 2**20:.1f} MiB, more than the "
                                f"{self.limits.max_bytes_per_client / 2**20:.1f} MiB one client may queue; "
                                f"submit again when one of yours has finished", job_id=job.job_id)

    def cancel(self, job_id: str, owner: object) -> bool:
        """Cancel a queued or running job of `owner`; False if it is not (or no longer) there."""
        with self._lock:
            for job in list(self._queue) + ([self._running] if self._running else []):
                if job.job_id == job_id and job.owner == owner:
                    job.cancel.set()
                    self._lock.notify_all()
                    return True
        return False

    def cancel_owner(self, owner: object) -> int:
        """Cancel all jobs of a client that went away."""
        count = 0
        with self._lock:
            for job in list(self._queue) + ([self._running] if self._running else []):
                if job.owner == owner:
                    job.cancel.set()
                    count += 1
            self._lock.notify_all()
        return count

    def status(self) -> dict:
        with self._lock:
            running = self._running.job_id if self._running else None
            return {"engine": self.engine_state, "queued": len(self._queue), "running": running,
                    "jobs_done": self.jobs_done, "jobs_failed": self.jobs_failed,
                    "jobs_cancelled": self.jobs_cancelled}

    def idle(self) -> bool:
        with self._lock:
            return self._running is None and not self._queue

    # ------------------------------------------------------------------------------ the thread

    def _loop(self) -> None:
        try:
            self.engine.warm_up()
            self.engine_state = "ready"
        except Exception as e:  # noqa: BLE001 - reported to every job instead of crashing
            self._engine_failure = e
            self.engine_state = f"failed: {e}"
            log.error("the inference engine could not start: %s", e)
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._lock.wait()
                if not self._queue:
                    return
                job = self._queue.popleft()
                self._running = job
            try:
                self._run(job)
            finally:
                with self._lock:
                    self._running = None
                    self._known.discard(job.job_id)

    def _run(self, job: Job) -> None:
        if job.cancel.is_set():
            self._finish(job, Cancelled("cancelled before it started"))
            return
        if self._engine_failure is not None:
            self._finish(job, self._engine_failure)
            return
        started = time.perf_counter()
        try:
            results = self.engine.run(job.request, self._progress_for(job), job.cancel)
        except BaseException as e:  # noqa: BLE001 - every outcome becomes exactly one event
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            self._finish(job, e, time.perf_counter() - started)
            return
        self._finish(job, results, time.perf_counter() - started)

    def _progress_for(self, job: Job) -> Callable[[float, str], None]:
        last = {"time": 0.0, "stage": None}

        def progress(fraction: float, stage: str) -> None:
            now = time.monotonic()
            if (stage != last["stage"] or fraction >= 1.0
                    or now - last["time"] >= self.progress_interval):
                last["time"], last["stage"] = now, stage
                self.emit(job, Event(EventKind.PROGRESS, job.job_id, float(fraction), stage))

        return progress

    def _finish(self, job: Job, outcome, elapsed_s: float = 0.0) -> None:
        """The one place a job's terminal event is made."""
        if isinstance(outcome, dict) and not job.cancel.is_set():
            self.jobs_done += 1
            event = Event(EventKind.RESULT, job.job_id, 1.0, "done", results=outcome)
        elif isinstance(outcome, (dict, Cancelled)):
            self.jobs_cancelled += 1
            event = Event(EventKind.CANCELLED, job.job_id, message="The job was cancelled.",
                          error_code=ErrorCode.CANCELLED.value)
        else:
            self.jobs_failed += 1
            if isinstance(outcome, NNMambaError):
                code, message = outcome.code, str(outcome)
            elif isinstance(outcome, MemoryError):
                code = ErrorCode.OUT_OF_MEMORY.value
                message = "The worker ran out of memory; try a smaller volume or a machine with more RAM."
            else:
                code = ErrorCode.INTERNAL.value
                message = (f"The worker failed unexpectedly ({type(outcome).__name__}: {outcome}). "
                           f"This is a bug; the worker's log has the details.")
                log.error("job %s failed:\n%s", job.job_id,
                          "".join(traceback.format_exception(type(outcome), outcome, outcome.__traceback__)))
            event = Event(EventKind.ERROR, job.job_id, error_code=code, message=message)
        event.elapsed_s = elapsed_s
        # Done before the event leaves: a client that asks for the status once it has its result
        # must not see the job still running.
        with self._lock:
            if self._running is job:
                self._running = None
        self.emit(job, event)
