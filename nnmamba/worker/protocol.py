"""The worker protocol: typed messages <-> one JSON header + binary array frames.

torch-free (the Slicer module's client uses it). A message travels over a websocket as:

    text frame    JSON header: {"type": ..., fields..., "arrays": [{"name", "dtype", "shape"}, ...]}
    binary frames the arrays' bytes, in the header's order, each array cut into frames of at most
                  `CHUNK_BYTES` (an array never shares a frame with another; empty arrays send none)

so voxels never become JSON number lists, the receiver can check sizes and dtypes before any
voxel arrives, and no websocket frame is bigger than `CHUNK_BYTES`.

Message types (client -> worker): submit, cancel, status, list_models, shutdown, echo; every one
carries the protocol version and the token. Worker -> client: event (progress, result, error,
cancelled) for jobs, reply for the other requests. A job ends with exactly one terminal event
(`EventKind.is_terminal`), whatever happens: that is the one code path for completion.

Example:
    >>> header, arrays = encode_event(Event(EventKind.PROGRESS, "job1", fraction=0.5, stage="tiles"))
    >>> header["kind"], arrays
    ('progress', [])
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from nnmamba.errors import InputError
from nnmamba.tasks import get_task, task_names
from nnmamba.volume import Geometry, Volume

PROTOCOL_VERSION = 1
CHUNK_BYTES = 8 << 20
MAX_HEADER_BYTES = 1 << 20
# The transport refuses frames above this; a chunk plus websocket framing always fits.
MAX_FRAME_BYTES = max(CHUNK_BYTES, MAX_HEADER_BYTES) + 4096
TOKEN_HEADER = "Authorization"

# Little-endian (or byte-order-free) numeric dtypes only: no objects, strings or complex numbers.
WIRE_DTYPES = ("|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8")
VOLUME_DTYPES = ("|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<f2", "<f4", "<f8")


class MessageType(str, enum.Enum):
    SUBMIT = "submit"
    CANCEL = "cancel"
    STATUS = "status"
    LIST_MODELS = "list_models"
    SHUTDOWN = "shutdown"
    ECHO = "echo"              # arrays sent straight back: measures the link (benchmarks/worker.py)
    EVENT = "event"
    REPLY = "reply"


class EventKind(str, enum.Enum):
    PROGRESS = "progress"
    RESULT = "result"
    ERROR = "error"
    CANCELLED = "cancelled"
    WORKER_DIED = "worker_died"

    @property
    def is_terminal(self) -> bool:
        return self is not EventKind.PROGRESS


class ErrorCode(str, enum.Enum):
    """Stable error codes; the first five equal `nnmamba.errors` classes' `code`."""

    BAD_INPUT = "bad_input"
    BAD_MODEL = "bad_model"
    OUTPUT_EXISTS = "output_exists"
    CANCELLED = "cancelled"
    BACKEND_UNAVAILABLE = "backend_unavailable"
    BAD_MESSAGE = "bad_message"          # malformed header, unknown type, wrong dtype, size mismatch
    TOO_LARGE = "too_large"              # the declared arrays exceed the worker's limit
    UNAUTHORIZED = "unauthorized"        # missing or wrong token
    VERSION_MISMATCH = "version_mismatch"
    OUT_OF_MEMORY = "out_of_memory"      # even the CPU retry ran out of memory
    WORKER_DIED = "worker_died"
    INTERNAL = "internal"                # a bug: the message has the exception

    @classmethod
    def from_code(cls, code: str) -> "ErrorCode":
        try:
            return cls(code)
        except ValueError:
            return cls.INTERNAL


class ProtocolError(ValueError):
    """A message that breaks the protocol; `code` says how, `job_id`/`request_id` what it was."""

    def __init__(self, code: ErrorCode, message: str, job_id: Optional[str] = None,
                 request_id: Optional[str] = None):
        super().__init__(message)
        self.code = code
        self.job_id = job_id
        self.request_id = request_id


@dataclass
class Event:
    """One thing that happened to a job. `results` maps task name -> a `nnmamba.results` object."""

    kind: EventKind
    job_id: Optional[str]
    fraction: float = 0.0
    stage: str = ""
    results: dict = field(default_factory=dict)
    error_code: Optional[str] = None
    message: str = ""
    elapsed_s: float = 0.0   # terminal events: seconds the job spent in the engine (0 if it never ran)


@dataclass
class SubmitRequest:
    job_id: str
    volume: Volume
    tasks: list
    models: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)


@dataclass
class Reply:
    request_id: str
    ok: bool
    data: Any = None
    error_code: Optional[str] = None
    message: str = ""
    arrays: dict = field(default_factory=dict)   # name -> array (only the echo reply has any)


# ---------------------------------------------------------------------------------- arrays


def wire_array(array: np.ndarray) -> np.ndarray:
    """`array` as a C-contiguous array of a wire dtype (little-endian), copying only if needed."""
    array = np.asarray(array)
    dtype = array.dtype
    if dtype.byteorder == ">" or (dtype.byteorder == "=" and np.little_endian is False):
        dtype = dtype.newbyteorder("<")
    if dtype.str not in WIRE_DTYPES:
        raise ValueError(f"arrays of dtype {array.dtype} cannot be sent to the worker; "
                         f"use one of {', '.join(np.dtype(d).name for d in WIRE_DTYPES)}")
    return np.ascontiguousarray(array, dtype=dtype)


def array_spec(name: str, array: np.ndarray) -> dict:
    return {"name": name, "dtype": array.dtype.str, "shape": list(array.shape)}


def check_array_specs(specs: Any, max_bytes: int) -> list:
    """Validate the header's "arrays" list; return [(name, dtype, shape, nbytes)]."""
    if not isinstance(specs, list):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f'"arrays" must be a list, got {type(specs).__name__}')
    checked, total = [], 0
    for spec in specs:
        if not isinstance(spec, dict) or not {"name", "dtype", "shape"} <= set(spec):
            raise ProtocolError(ErrorCode.BAD_MESSAGE,
                                f'each array needs "name", "dtype" and "shape", got {spec!r:.200}')
        name, dtype, shape = spec["name"], spec["dtype"], spec["shape"]
        if dtype not in WIRE_DTYPES:
            raise ProtocolError(ErrorCode.BAD_MESSAGE,
                                f"array {name!r} has dtype {dtype!r}, which the worker does not accept; "
                                f"expected one of {', '.join(WIRE_DTYPES)}")
        if (not isinstance(shape, list) or len(shape) > 8
                or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
            raise ProtocolError(ErrorCode.BAD_MESSAGE,
                                f"array {name!r} has shape {shape!r:.200}; expected a list of at most "
                                f"8 non-negative integers")
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        total += nbytes
        if total > max_bytes:
            raise ProtocolError(ErrorCode.TOO_LARGE,
                                f"the message declares {total / 2**20:.1f} MiB of arrays, more than this "
                                f"worker's limit of {max_bytes / 2**20:.1f} MiB; send a smaller (cropped or "
                                f"resampled) volume or start the worker with a larger --max-job-mb")
        checked.append((str(name), np.dtype(dtype), tuple(shape), nbytes))
    return checked


# ---------------------------------------------------------------------------------- requests


def encode_submit(request: SubmitRequest, token: str) -> tuple:
    known = task_names()
    unknown = [t for t in request.tasks if t not in known]
    if unknown or not request.tasks:
        raise ValueError(f"tasks must be a non-empty list of {known}, got {list(request.tasks)}")
    volume = wire_array(request.volume.array)
    header = {"type": MessageType.SUBMIT.value, "protocol": PROTOCOL_VERSION, "token": token,
              "job_id": request.job_id, "tasks": [getattr(t, "value", t) for t in request.tasks],
              "models": dict(request.models or {}), "options": dict(request.options or {}),
              "geometry": request.volume.geometry.to_dict(),
              "arrays": [array_spec("volume", volume)]}
    return header, [volume]


def encode_request(kind: MessageType, token: str, arrays: Optional[dict] = None, **fields: Any) -> tuple:
    wire = {name: wire_array(a) for name, a in (arrays or {}).items()}
    header = {"type": kind.value, "protocol": PROTOCOL_VERSION, "token": token, **fields,
              "arrays": [array_spec(name, a) for name, a in wire.items()]}
    return header, list(wire.values())


def decode_geometry(d: Any) -> Geometry:
    """Geometry from {"origin", "spacing", "direction"} (LPS) or {"ijk_to_ras": 4x4}."""
    if not isinstance(d, dict):
        raise ValueError(f'"geometry" must be an object, got {type(d).__name__}')
    try:
        if "ijk_to_ras" in d:
            matrix = np.asarray(d["ijk_to_ras"], dtype=np.float64)
            if matrix.shape != (4, 4):
                raise ValueError(f'"ijk_to_ras" must be 4x4, got shape {matrix.shape}')
            geometry = Geometry.from_ijk_to_ras_matrix(matrix)
        else:
            geometry = Geometry.from_dict(d)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f'"geometry" needs "origin" (3), "spacing" (3) and "direction" (3x3), '
                         f'or "ijk_to_ras" (4x4): {e}') from e
    values = np.concatenate([geometry.origin, geometry.spacing, geometry.direction.ravel()])
    if not np.all(np.isfinite(values)) or np.any(geometry.spacing <= 0):
        raise ValueError(f"geometry must be finite with positive spacing, got spacing "
                         f"{geometry.spacing.tolist()}, origin {geometry.origin.tolist()}")
    return geometry


def decode_submit(header: dict, arrays: dict) -> SubmitRequest:
    """A validated SubmitRequest; raises ProtocolError(BAD_MESSAGE) naming the bad field."""
    job_id = header.get("job_id")
    if not isinstance(job_id, str) or not 0 < len(job_id) <= 128:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f'"job_id" must be a string of 1-128 characters, '
                                                   f'got {job_id!r:.200}')

    def bad(message: str) -> ProtocolError:
        return ProtocolError(ErrorCode.BAD_MESSAGE, message, job_id=job_id)

    tasks = header.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise bad(f'"tasks" must be a non-empty list of {task_names()}, got {tasks!r:.200}')
    for task in tasks:
        if task not in task_names():
            raise bad(f"unknown task {task!r:.100}; expected one of {task_names()}")
    models = header.get("models") or {}
    if not isinstance(models, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                               for k, v in models.items()):
        raise bad(f'"models" must map task names to model names or paths, got {models!r:.200}')
    options = header.get("options") or {}
    if not isinstance(options, dict):
        raise bad(f'"options" must be an object, got {type(options).__name__}')
    from nnmamba.errors import InputError
    from nnmamba.inference.options import InferenceOptions

    try:
        InferenceOptions.from_dict(options)  # torch-free; the worker builds the real ones per job
    except InputError as e:
        raise ProtocolError(ErrorCode.BAD_INPUT, f"invalid inference options: {e}", job_id=job_id) from e
    try:
        geometry = decode_geometry(header.get("geometry"))
    except ValueError as e:
        raise bad(str(e)) from e
    volume = arrays.get("volume")
    if volume is None or set(arrays) != {"volume"}:
        raise bad(f'a submit carries exactly one array named "volume", got {sorted(arrays)}')
    if volume.dtype.str not in VOLUME_DTYPES:
        raise bad(f"the volume has dtype {volume.dtype}; expected one of "
                  f"{', '.join(np.dtype(d).name for d in VOLUME_DTYPES)}")
    if volume.ndim not in (3, 4) or min(volume.shape) == 0:
        raise bad(f"the volume must be [k, j, i] or [c, k, j, i] with no empty axis, got shape "
                  f"{list(volume.shape)}")
    return SubmitRequest(job_id, Volume(volume, geometry), list(tasks), dict(models), dict(options))


# ---------------------------------------------------------------------------------- results


def _timings(result: Any) -> dict:
    """The result's stage timings (stage -> seconds) as JSON numbers."""
    return {str(k): float(v) for k, v in getattr(result, "timings", {}).items()}


def _decoded_timings(header: dict) -> dict:
    timings = header.get("timings", {})
    if not isinstance(timings, dict) or not all(isinstance(v, (int, float)) for v in timings.values()):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"result timings must map stage names to seconds, got {timings!r}")
    return {str(k): float(v) for k, v in timings.items()}


def _encode_result(index: int, task: str, result: Any) -> tuple:
    prefix = f"r{index}."
    definition = get_task(task) if task in task_names() else None
    if definition is None or not isinstance(result, definition.result_type):
        raise TypeError(f"cannot send a result of type {type(result).__name__} for task {task!r}")
    fields, arrays = definition.encode(result)
    header = {"task": task, "kind": definition.name, "model": result.model, "timings": _timings(result), **fields}
    return header, [(prefix + name, wire_array(array)) for name, array in arrays.items()]


def _decode_result(index: int, header: dict, arrays: dict) -> Any:
    prefix = f"r{index}."
    kind = header.get("kind")
    try:
        definition = get_task(kind)
    except InputError:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"unknown result kind {kind!r}") from None
    own = {name[len(prefix):]: array for name, array in arrays.items() if name.startswith(prefix)}
    return definition.decode_wire(header, own, header.get("model", ""), _decoded_timings(header), decode_geometry)


# ---------------------------------------------------------------------------------- events, replies


def encode_event(event: Event) -> tuple:
    header = {"type": MessageType.EVENT.value, "kind": event.kind.value, "job_id": event.job_id,
              "fraction": float(event.fraction), "stage": event.stage, "error_code": event.error_code,
              "message": event.message, "elapsed_s": float(event.elapsed_s), "results": []}
    arrays, specs = [], []
    for index, (task, result) in enumerate(event.results.items()):
        result_header, result_arrays = _encode_result(index, task, result)
        header["results"].append(result_header)
        for name, array in result_arrays:
            specs.append(array_spec(name, array))
            arrays.append(array)
    header["arrays"] = specs
    return header, arrays


def decode_event(header: dict, arrays: dict) -> Event:
    try:
        kind = EventKind(header["kind"])
        results = {}
        for index, result_header in enumerate(header.get("results") or []):
            results[result_header["task"]] = _decode_result(index, result_header, arrays)
        return Event(kind, header.get("job_id"), float(header.get("fraction") or 0.0),
                     header.get("stage") or "", results, header.get("error_code"),
                     header.get("message") or "", float(header.get("elapsed_s") or 0.0))
    except (KeyError, TypeError, ValueError) as e:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"the worker sent an event the client cannot "
                                                   f"read ({type(e).__name__}: {e})") from e


def encode_reply(reply: Reply) -> tuple:
    wire = {name: wire_array(a) for name, a in reply.arrays.items()}
    header = {"type": MessageType.REPLY.value, "request_id": reply.request_id, "ok": reply.ok,
              "data": reply.data, "error_code": reply.error_code, "message": reply.message,
              "arrays": [array_spec(name, a) for name, a in wire.items()]}
    return header, list(wire.values())


def decode_reply(header: dict, arrays: Optional[dict] = None) -> Reply:
    return Reply(header.get("request_id"), bool(header.get("ok")), header.get("data"),
                 header.get("error_code"), header.get("message") or "", dict(arrays or {}))
