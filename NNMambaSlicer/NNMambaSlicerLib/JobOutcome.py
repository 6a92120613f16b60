"""How a job of the logic ended: its status, the nodes made and the times, in one value; and the
exception a script gets for an ending that is not a success."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional

from nnmamba.errors import Cancelled, NNMambaError
from nnmamba.worker.errors import WorkerDiedError, error_for


class ResultsNotAddedError(NNMambaError, RuntimeError):
    """Some tasks' results could not become nodes; `outputs` holds the tasks that were added."""

    code = "results_not_added"

    def __init__(self, message: str, outputs: Optional[dict] = None) -> None:
        super().__init__(message)
        self.outputs = dict(outputs or {})


class JobStatus(enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    WORKER_DIED = "worker_died"


@dataclass
class JobOutcome:
    """How a job ended. `outputs` maps task -> the nodes made for it (classification: table, series, chart).

    Example:
        >>> JobOutcome("job-1", JobStatus.CANCELLED, message="Cancelled.").succeeded
        False
    """

    jobId: str
    status: JobStatus
    outputs: dict = field(default_factory=dict)
    message: str = ""
    errorCode: Optional[str] = None
    results: dict = field(default_factory=dict, repr=False)  # task -> nnmamba.results object
    engineSeconds: float = 0.0        # the worker's time on the job (its terminal event's elapsed_s)
    totalSeconds: float = 0.0         # from submit to the result nodes, seen from here (upload included)

    @property
    def succeeded(self) -> bool:
        return self.status is JobStatus.SUCCEEDED

    @staticmethod
    def errorFor(outcome: "JobOutcome") -> Exception:
        """The exception `WorkerClient.run` raises for the same ending, so scripts catch one set of types."""
        if outcome.status is JobStatus.CANCELLED:
            return Cancelled(outcome.message or "the job was cancelled")
        if outcome.status is JobStatus.WORKER_DIED:
            return WorkerDiedError(outcome.message)
        if outcome.errorCode == ResultsNotAddedError.code:
            return ResultsNotAddedError(outcome.message, outcome.outputs)
        return error_for(outcome.errorCode or "", outcome.message)

    def timingSummary(self) -> str:
        """The job's times in words; per-stage times where a result carries them (a `timings` mapping
        of stage -> seconds), e.g. "12.4 s in all, 10.9 s in the worker; segmentation: network 9.1 s"."""
        if not self.totalSeconds:
            return ""
        parts = [f"{self.totalSeconds:.1f} s in all" +
                 (f", {self.engineSeconds:.1f} s in the worker" if self.engineSeconds else "")]
        for task, result in self.results.items():
            stages = getattr(result, "timings", None) or {}
            if stages:
                parts.append(f"{task}: " + ", ".join(f"{stage} {float(seconds):.1f} s"
                                                      for stage, seconds in stages.items()))
        return "; ".join(parts)
