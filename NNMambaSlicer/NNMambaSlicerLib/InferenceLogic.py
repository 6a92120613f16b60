"""The module's logic: volume nodes -> worker job -> result nodes, without ever blocking the GUI.

`submit` sends a job and returns at once; `poll` (called from a qt.QTimer in Slicer, or directly
by scripts and tests) handles the worker's events: progress, results (turned into MRML nodes),
errors, cancellation and a dead worker (reported in plain words, then restarted).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from nnmamba.errors import InputError, NNMambaError
from nnmamba.worker.errors import WorkerTimeoutError
from nnmamba.worker.protocol import EventKind

from .BackgroundTask import BackgroundTask
from .JobOutcome import JobOutcome, JobStatus, ResultsNotAddedError
from .JobRequest import JobRequest
from .ResultNodes import ResultNodes
from .Signal import Signal
from .VolumeConverter import VolumeConverter
from .WorkerStarter import WorkerStarter
from .WorkerProtocols import WorkerConnectionProtocol

__all__ = ["InferenceLogic", "JobOutcome", "JobStatus", "ResultsNotAddedError"]


@dataclass
class _Job:
    jobId: str                        # ours, returned by submit at once
    sourceNode: Any                   # the node object: a closed scene's IDs are reused by the next one
    sentGeometry: Any                 # the input's Geometry as sent; results are placed only on that
    sentShape: tuple                  # the input's [k, j, i] as sent
    tasks: list
    replaceExisting: bool
    onProgress: Optional[Callable] = None
    onFinished: Optional[Callable] = None
    outputSegmentation: Any = None    # the segmentation node to fill (None: a new one)
    request: Optional[tuple] = None   # (volume, tasks, models, options) until sent to the worker
    workerJobId: Optional[str] = None
    upload: Optional[BackgroundTask] = None  # the send under way (a volume to a remote server takes a while)
    cancelSend: Optional[BackgroundTask] = None  # a cancel on its way to the worker
    cancelRequestedAt: Optional[float] = None
    submittedAt: float = 0.0
    fraction: float = 0.0
    stage: str = "queued"


class InferenceLogic:
    """Runs nnMamba tasks on volume nodes through a worker and adds the results to the scene.

    Example (Slicer's Python console; `NNMambaSlicerLogic` wraps this class):
        >>> logic = InferenceLogic(WorkerConnection(WorkerSettings(device="cpu")))
        >>> outputs = logic.run(volumeNode, tasks=["segmentation", "classification"])
        >>> outputs["segmentation"][0].GetName()
        'MRHead segmentation'
    """

    def __init__(self, connection: WorkerConnectionProtocol, scene=None, cancelGraceSeconds: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, joinTimeoutSeconds: float = 10.0) -> None:
        self.connection = connection
        self._scene = scene
        self.cancelGraceSeconds = cancelGraceSeconds
        self.joinTimeoutSeconds = joinTimeoutSeconds  # the longest the GUI thread waits for a helper thread
        self._clock = clock
        self.progress = Signal()          # (jobId, fraction, stage)
        self.finished = Signal()          # (JobOutcome)
        self.workerRestarted = Signal()   # (message)
        self.outputsAdded = Signal()      # (source volume node, {task: nodes}): the GUI shows them
        self._jobs: dict = {}
        self._jobNumbers = itertools.count(1)
        self.starter = WorkerStarter()
        self.converter = VolumeConverter()
        self.resultNodes = ResultNodes()
        self._abandonedUploads: list = []  # uploads of jobs dropped with their scene: cancelled on arrival

    # -- scene -----------------------------------------------------------------------------------
    @property
    def scene(self):
        if self._scene is not None:
            return self._scene
        import slicer
        return slicer.mrmlScene

    def existingOutputs(self, volumeNode, tasks: Optional[Sequence[str]] = None) -> dict:
        """task -> this module's earlier output nodes for `volumeNode` (only the tasks asked for)."""
        return ResultNodes.existing(volumeNode, tasks)

    def addResultsToScene(self, sourceVolumeNode, results: dict, replaceExisting: bool = False,
                          outputSegmentation=None) -> dict:
        """task -> new nodes for `results` (nnmamba.results objects) of `sourceVolumeNode`; see `ResultNodes.add`."""
        return self.resultNodes.add(sourceVolumeNode, results, replaceExisting, self.outputsAdded.emit,
                                    outputSegmentation)

    def dropJobs(self) -> list:
        """End every job now, as cancelled, and ask the worker to stop them: their input is going
        (the scene is closing: the panel's SceneCloseGuard calls this). Nothing they send later is
        built. Returns the outcomes."""
        ended = []
        for job in list(self._jobs.values()):
            if job.upload is not None:
                self._abandonedUploads.append(job.upload)
            elif job.workerJobId is not None and job.cancelRequestedAt is None:
                self._sendCancel(job.workerJobId)  # forgotten here whatever the worker does with it
            ended.append(self._finish(job, JobOutcome(job.jobId, JobStatus.CANCELLED,
                                                      message="Cancelled: the scene was closed.")))
        return ended

    # -- jobs ------------------------------------------------------------------------------------
    @property
    def isBusy(self) -> bool:
        return bool(self._jobs)

    @property
    def needsPolling(self) -> bool:
        """Jobs run, or a dropped job's volume is still on its way (it is cancelled once it arrives)."""
        return bool(self._jobs or self._abandonedUploads)

    def submit(self, volumeNodes, tasks, models: Optional[dict] = None, options: Optional[dict] = None,
               replaceExisting: bool = False, onProgress: Optional[Callable] = None,
               onFinished: Optional[Callable] = None, outputSegmentation=None) -> str:
        """Queue one job and return its id at once. `volumeNodes`: the input, then extra channels.

        The voxels are read now (MRML belongs to this thread); a worker that is not running yet is
        started on a background thread, and `poll` sends the job once it listens."""
        volumeNodes = list(volumeNodes) if isinstance(volumeNodes, (list, tuple)) else [volumeNodes]
        tasks = self.normalizeTasks(tasks)
        models = dict(models or {})
        problem = JobRequest.channelProblem(volumeNodes, tasks, models)
        if problem:
            raise InputError(problem)
        volume = self.converter.toVolume(volumeNodes)
        jobId = f"job-{next(self._jobNumbers)}"
        job = _Job(jobId, volumeNodes[0], volume.geometry, tuple(volume.array.shape[1:]), tasks, replaceExisting,
                   onProgress, onFinished, outputSegmentation,
                   request=(volume, tasks, models or None, options or None), submittedAt=self._clock())
        self._jobs[jobId] = job
        self._startWorkerInBackground()
        return jobId

    def _dropJobsWithoutInput(self) -> list:
        """Jobs whose input left the scene (deleted, or its scene closed without the panel there to
        call `dropJobs`) end as cancelled before any of their events is handled."""
        ended = []
        for job in list(self._jobs.values()):
            scene = job.sourceNode.GetScene()
            if scene is not None and scene.IsNodePresent(job.sourceNode):
                continue
            if job.upload is not None:
                self._abandonedUploads.append(job.upload)
            elif job.workerJobId is not None and job.cancelRequestedAt is None:
                self._sendCancel(job.workerJobId)
            ended.append(self._finish(job, JobOutcome(job.jobId, JobStatus.CANCELLED,
                                                      message="Cancelled: the input volume left the scene.")))
        return ended

    def startWorker(self) -> None:
        """Start (or connect to) the worker now, off the GUI thread, e.g. to ask it for its models;
        `connection.isStarted` says when it is up."""
        self._startWorkerInBackground()

    @property
    def isStartingWorker(self) -> bool:
        return self.starter.busy

    @property
    def workerStartError(self) -> Optional[BaseException]:
        """Why the last start failed (None after a good one); jobs waiting for it are failed by poll."""
        return self.starter.error

    def cancel(self, jobId: Optional[str] = None) -> None:
        """Ask the worker to stop; a local worker that does not stop in time is killed and restarted."""
        for job in list(self._jobs.values()):
            if jobId is not None and job.jobId != jobId:
                continue
            if job.cancelRequestedAt is not None:
                continue
            job.cancelRequestedAt = self._clock()
            if job.workerJobId is None:
                continue  # not sent yet: poll ends it without sending
            job.cancelSend = self._sendCancel(job.workerJobId)

    def _sendCancel(self, workerJobId: str) -> BackgroundTask:
        """Send a cancel off the GUI thread: a remote client sends it only after an upload under way
        (another job's volume) has gone out. `poll` looks at how it ended."""
        client = self.connection.currentClient()

        def send() -> None:
            if client is None:
                raise RuntimeError("no worker is running")
            client.cancel(workerJobId)

        return BackgroundTask(send, f"nnmamba-cancel-{workerJobId}")

    def _failedCancels(self) -> None:
        """A cancel that could not be sent makes its job overdue at once: the worker is stopped instead."""
        for job in self._jobs.values():
            if job.cancelSend is not None and job.cancelSend.done:
                cancelSend, job.cancelSend = job.cancelSend, None
                if cancelSend.error is not None:
                    logging.warning("NNMambaSlicer: cancel request failed (%s); stopping the worker instead",
                                    cancelSend.error)
                    job.cancelRequestedAt = -float("inf")

    def poll(self, timeout: float = 0.0) -> list:
        """Handle what the worker sent (waiting up to `timeout` s); returns the jobs that ended."""
        if not self.needsPolling:
            return []
        # Overdue cancellations first: once the grace period is over the worker is stopped,
        # whatever it may still send.
        self._cancelAbandonedUploads()
        self._failedCancels()
        ended = self._dropJobsWithoutInput() + self._sendQueuedJobs() + self._overdueCancellations()
        if not self._jobs:
            return ended
        if self.starter.busy or all(job.workerJobId is None for job in self._jobs.values()):
            time.sleep(min(timeout, 0.05))  # the worker is still starting, or the volumes are on their way
            return ended
        client = self.connection.currentClient()  # never starts one: a dead worker must be seen as dead
        if client is None:
            return ended + self._workerDied("the worker is not running")
        try:
            events = client.poll(timeout)
        except Exception as error:
            return ended + self._workerDied(f"the connection to the worker broke ({error})")
        byWorkerId = {job.workerJobId: job for job in self._jobs.values()}
        for event in events:
            if event.kind == EventKind.WORKER_DIED:
                return ended + self._workerDied(event.message or "the worker process exited")
            job = byWorkerId.get(event.job_id)
            if job is None or job.jobId not in self._jobs:
                continue  # a job we stopped waiting for (cancelled after the grace period)
            if event.kind == EventKind.PROGRESS:
                job.fraction, job.stage = float(event.fraction), str(event.stage)
                self._emitProgress(job)
            elif event.kind == EventKind.RESULT and job.cancelRequestedAt is not None:
                # The user (or a closing scene) no longer wants it: never build it, even if it is done.
                ended.append(self._finish(job, JobOutcome(job.jobId, JobStatus.CANCELLED, message="Cancelled.")))
            elif event.kind == EventKind.RESULT:
                outcome = self._buildOutputs(job, event.results)
                outcome.engineSeconds = float(event.elapsed_s or 0.0)
                outcome.totalSeconds = self._clock() - job.submittedAt
                ended.append(self._finish(job, outcome))
            elif event.kind == EventKind.CANCELLED:
                ended.append(self._finish(job, JobOutcome(job.jobId, JobStatus.CANCELLED, message="Cancelled.")))
            elif event.kind == EventKind.ERROR:
                outcome = JobOutcome(job.jobId, JobStatus.FAILED, message=event.message, errorCode=event.error_code)
                ended.append(self._finish(job, outcome))
        return ended

    def _startWorkerInBackground(self, stopFirst: bool = False) -> None:
        """Start (or connect to) the worker off the GUI thread; `stopFirst`: a restart."""
        self.starter.start(self.connection, stopFirst)

    def _sendQueuedJobs(self) -> list:
        if self.starter.busy:
            return []
        queued = [job for job in self._jobs.values() if job.workerJobId is None]
        if not queued:
            return []
        ended = []
        error = self.starter.takeError()
        if error is not None:
            message = (f"The nnMamba worker could not be started: {error}. Check the worker settings (its Python "
                       "environment, or the server address and token) and try again.")
            return [self._finish(job, JobOutcome(job.jobId, JobStatus.FAILED, message=message,
                                                 errorCode="worker_unavailable")) for job in queued]
        if not self.connection.isStarted:  # it died before the jobs went out: start another, off-thread
            self._startWorkerInBackground()
            return [self._finish(job, JobOutcome(job.jobId, JobStatus.CANCELLED, message="Cancelled."))
                    for job in queued if job.cancelRequestedAt is not None]
        for job in queued:
            if job.upload is None:
                if job.cancelRequestedAt is not None:
                    ended.append(self._finish(job, JobOutcome(job.jobId, JobStatus.CANCELLED, message="Cancelled.")))
                    continue
                job.upload = self._uploadInBackground(job)
                job.stage = "sending the volume to the worker"
                self._emitProgress(job)
            elif job.upload.done:
                outcome = self._uploadEnded(job)
                if outcome is not None:
                    ended.append(outcome)
        return ended

    def _cancelAbandonedUploads(self) -> None:
        """A dropped job whose volume was still on its way: cancel it on the worker once it arrives."""
        for upload in [u for u in self._abandonedUploads if u.done]:
            self._abandonedUploads.remove(upload)
            if upload.error is None:
                self._sendCancel(upload.result)

    def _uploadInBackground(self, job: _Job) -> BackgroundTask:
        client = self.connection.client()
        volume, tasks, models, options = job.request
        return BackgroundTask(lambda: client.submit(volume, tasks, models=models, options=options),
                              f"nnmamba-upload-{job.jobId}")

    def _uploadEnded(self, job: _Job) -> Optional[JobOutcome]:
        """The job's send ended: fail it, or note its worker id (and pass on a cancel asked meanwhile)."""
        upload, job.upload = job.upload, None
        if isinstance(upload.error, NNMambaError):
            return self._finish(job, JobOutcome(job.jobId, JobStatus.FAILED, message=str(upload.error),
                                                errorCode=upload.error.code))
        if upload.error is not None:
            return self._finish(job, JobOutcome(
                job.jobId, JobStatus.FAILED, errorCode="worker_unavailable",
                message=f"Could not send the job to the nnMamba worker: {upload.error}. Check the worker settings "
                        "and try again."))
        job.workerJobId = upload.result
        job.request = None
        job.stage = "sent to the worker"
        self._emitProgress(job)
        if job.cancelRequestedAt is not None:  # cancelled while its volume was on the way
            job.cancelRequestedAt = None
            self.cancel(job.jobId)
        return None

    def run(self, volumeNode, tasks=("segmentation",), model: Optional[str] = None, models: Optional[dict] = None,
            device: Optional[str] = None, extraChannels: Sequence = (), replaceExisting: bool = False,
            timeout: Optional[float] = None, whileWaiting: Optional[Callable] = None, **options) -> dict:
        """Blocking: run `tasks` on `volumeNode`; returns task -> output nodes, raises on failure.

        `model` names the model when one task is asked; `models` maps task -> model name or card path.
        Other keyword options (tta, overlap, precision) go to the worker."""
        outcome = {}

        def keep(result: JobOutcome) -> None:
            outcome["result"] = result

        jobId = self.runAsync(volumeNode, keep, tasks=tasks, model=model, models=models, device=device,
                              extraChannels=extraChannels, replaceExisting=replaceExisting, **options)
        deadline = None if timeout is None else self._clock() + timeout
        timedOut = False
        while "result" not in outcome:
            self.poll(timeout=0.1)
            if whileWaiting is not None:
                whileWaiting()
            if not timedOut and deadline is not None and self._clock() > deadline and "result" not in outcome:
                self.cancel(jobId)
                timedOut = True
        result = outcome["result"]
        if result.succeeded:
            return result.outputs
        if timedOut and result.status is JobStatus.CANCELLED:
            raise WorkerTimeoutError(f"the job did not finish within {timeout:g} s and was cancelled")
        raise self.errorFor(result)

    def runAsync(self, volumeNode, callback: Callable, tasks=("segmentation",), model: Optional[str] = None,
                 models: Optional[dict] = None, device: Optional[str] = None, extraChannels: Sequence = (),
                 replaceExisting: bool = False, onProgress: Optional[Callable] = None, outputSegmentation=None,
                 **options) -> str:
        """Non-blocking `run`: `callback(JobOutcome)` is called from `poll` when the job ends.
        `outputSegmentation`: a segmentation node to put the segments in (None: a new node)."""
        tasks = self.normalizeTasks(tasks)
        models = dict(models or {})
        if model is not None:
            if len(tasks) != 1:
                raise ValueError(f"model='{model}' is ambiguous with {len(tasks)} tasks {tasks}; "
                                 "pass models={task: name} instead")
            models[tasks[0]] = model
        if device is not None:
            options["device"] = device
        return self.submit([volumeNode, *extraChannels], tasks, models=models, options=options,
                           replaceExisting=replaceExisting, onProgress=onProgress, onFinished=callback,
                           outputSegmentation=outputSegmentation)

    def close(self, startTimeout: Optional[float] = None) -> None:
        """Forget the jobs and stop the worker. A worker still starting is waited for `startTimeout` s
        (default `joinTimeoutSeconds`); one that starts later is stopped by its starting thread."""
        uploads = [job.upload for job in self._jobs.values() if job.upload is not None] + self._abandonedUploads
        self._jobs.clear()
        self._abandonedUploads = []
        timeout = self.joinTimeoutSeconds if startTimeout is None else startTimeout
        if not self.starter.abandon(timeout):
            logging.warning("NNMambaSlicer: the worker was still starting after %g s; it will be stopped as "
                            "soon as it has started", timeout)
        self.connection.close()  # also breaks the uploads' connection, which ends their threads
        unfinished = [upload for upload in uploads if not upload.join(self.joinTimeoutSeconds)]
        if unfinished:
            logging.warning("NNMambaSlicer: %d volume upload(s) had not ended %g s after the worker was stopped; "
                            "they are abandoned (daemon threads)", len(unfinished), self.joinTimeoutSeconds)

    # -- helpers ---------------------------------------------------------------------------------
    normalizeTasks = staticmethod(JobRequest.normalizeTasks)
    channelsOf = staticmethod(JobRequest.channelsOf)
    channelProblem = staticmethod(JobRequest.channelProblem)
    errorFor = staticmethod(JobOutcome.errorFor)

    def _emitProgress(self, job: _Job) -> None:
        self.progress.emit(job.jobId, job.fraction, job.stage)
        if job.onProgress is not None:
            job.onProgress(job.fraction, job.stage)

    def _finish(self, job: _Job, outcome: JobOutcome) -> JobOutcome:
        self._jobs.pop(job.jobId, None)
        if job.onFinished is not None:
            job.onFinished(outcome)
        self.finished.emit(outcome)
        return outcome

    def _workerDied(self, reason: str) -> list:
        message = (f"The nnMamba worker stopped unexpectedly: {reason}. It is being restarted; "
                   "press Apply to try again.")
        self._restartInBackground()
        self.workerRestarted.emit(message)
        return [self._finish(job, JobOutcome(job.jobId, JobStatus.WORKER_DIED, message=message,
                                             errorCode="worker_died"))
                for job in list(self._jobs.values()) if job.workerJobId is not None]

    def _restartInBackground(self) -> None:
        """Stop what is left of the worker and start a new one, both off the GUI thread."""
        if self.starter.busy:
            # The worker being started is the fresh one this restart asks for.
            logging.info("NNMambaSlicer: a worker start is under way; the restart uses that worker")
            return
        self._startWorkerInBackground(stopFirst=True)

    def _overdueCancellations(self) -> list:
        now = self._clock()
        overdue = [j for j in self._jobs.values() if j.workerJobId is not None
                   and j.cancelRequestedAt is not None and now - j.cancelRequestedAt >= self.cancelGraceSeconds]
        if not overdue:
            return []
        if not self.connection.isLocal:
            # A remote server is not ours to stop: stop waiting for the job; its late events are ignored.
            return [self._finish(j, JobOutcome(j.jobId, JobStatus.CANCELLED, message="Cancelled.")) for j in overdue]
        # The worker did not stop between tiles in time: kill its process tree and start afresh.
        self._restartInBackground()
        message = "Cancelled (the worker did not stop in time, so it was stopped and is being restarted)."
        ended = [self._finish(j, JobOutcome(j.jobId, JobStatus.CANCELLED, message=message)) for j in overdue]
        others = [j for j in self._jobs.values() if j.workerJobId is not None]
        return ended + [self._finish(j, JobOutcome(
            j.jobId, JobStatus.WORKER_DIED, errorCode="worker_died",
            message="The worker was restarted to cancel another job; press Apply to run this one again."))
            for j in others]

    def _buildOutputs(self, job: _Job, results: dict) -> JobOutcome:
        problem = ResultNodes.placementProblem(job.sourceNode, job.sentGeometry, job.sentShape, results)
        if problem:
            return JobOutcome(job.jobId, JobStatus.FAILED, errorCode="bad_input", results=results, message=problem)
        try:
            outputs = self.addResultsToScene(job.sourceNode, results, job.replaceExisting, job.outputSegmentation)
        except ResultsNotAddedError as error:
            return JobOutcome(job.jobId, JobStatus.FAILED, outputs=error.outputs, errorCode=error.code,
                              results=results, message=str(error))
        return JobOutcome(job.jobId, JobStatus.SUCCEEDED, outputs=outputs, results=results,
                          message=self.resultNodes.summary(outputs, results))
