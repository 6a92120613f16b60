"""Cutting a (header, arrays) message into websocket frames and putting it back together.

torch-free and transport-free: `frames()` yields what to send; `MessageAssembler.feed()` takes
each frame received and returns a complete message when its last frame arrives. Both sides of
the worker use them, so the framing rules live in one place (see `protocol` for the layout).

Example:
    >>> import numpy as np
    >>> assembler = MessageAssembler(max_array_bytes=1 << 20)
    >>> out = [assembler.feed(f) for f in frames({"type": "x"}, [np.arange(3, dtype="<i2")],
    ...                                             [{"name": "a", "dtype": "<i2", "shape": [3]}])]
    >>> out[-1][1]["a"].tolist()
    [0, 1, 2]
"""

from __future__ import annotations

import json
from typing import Iterator, Optional, Union

import numpy as np

from nnmamba.worker.protocol import (CHUNK_BYTES, MAX_HEADER_BYTES, ErrorCode, ProtocolError,
                                     array_spec, check_array_specs)

Frame = Union[str, bytes, bytearray, memoryview]


def frames(header: dict, arrays: list, specs: Optional[list] = None) -> Iterator[Frame]:
    """The header as a text frame, then each array's bytes in frames of at most CHUNK_BYTES."""
    if specs is None:
        specs = header.get("arrays") or [array_spec(f"a{i}", a) for i, a in enumerate(arrays)]
    header = dict(header, arrays=specs)
    yield json.dumps(header, allow_nan=False)
    for array in arrays:
        if not array.flags.c_contiguous:
            raise ValueError("arrays must be C-contiguous before framing (protocol.wire_array makes them so)")
        view = memoryview(array.reshape(-1)).cast("B") if array.size else memoryview(b"")
        for start in range(0, len(view), CHUNK_BYTES):
            yield view[start:start + CHUNK_BYTES]


class MessageAssembler:
    """Turns received frames back into (header, {name: array}) messages.

    `feed` returns None while a message is incomplete, the message when complete, and raises
    ProtocolError for a bad frame. After an error it discards the bad message's remaining binary
    frames (if the header said how many bytes follow) so the connection stays usable. A header
    that arrives before the previous message's bytes are complete is reported as an error of the
    previous message and is itself dropped (a conforming sender never does this; resend).
    """

    def __init__(self, max_array_bytes: int, max_header_bytes: int = MAX_HEADER_BYTES):
        self.max_array_bytes = max_array_bytes
        self.max_header_bytes = max_header_bytes
        self._header: Optional[dict] = None
        self._pending: list = []      # [(name, array, byte view, bytes filled)]
        self._arrays: dict = {}
        self._discard_bytes = 0       # bytes of a refused message still to skip
        self._after_error = False     # skip stray binary frames quietly after an error

    @property
    def busy(self) -> bool:
        return self._header is not None

    def feed(self, frame: Frame) -> Optional[tuple]:
        if isinstance(frame, str):
            return self._feed_header(frame)
        return self._feed_bytes(memoryview(frame).cast("B"))

    def _feed_header(self, text: str) -> Optional[tuple]:
        unfinished = self._header
        self._reset()
        if unfinished is not None:
            # The next header came before all bytes of the last message: report the last one.
            self._after_error = True
            raise ProtocolError(ErrorCode.BAD_MESSAGE,
                                "a new message started before all array bytes of the previous one arrived",
                                job_id=_str_or_none(unfinished.get("job_id")),
                                request_id=_str_or_none(unfinished.get("request_id")))
        if len(text) > self.max_header_bytes:
            self._after_error = True
            raise ProtocolError(ErrorCode.TOO_LARGE, f"message header of {len(text)} characters is over "
                                                     f"the limit of {self.max_header_bytes}")
        try:
            header = json.loads(text)
        except ValueError as e:
            self._after_error = True
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"the message header is not valid JSON: {e}") from e
        except RecursionError as e:   # "[[[[...": valid JSON nested deeper than Python parses
            self._after_error = True
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "the message header nests too deeply") from e
        if not isinstance(header, dict):
            self._after_error = True
            raise ProtocolError(ErrorCode.BAD_MESSAGE,
                                f"the message header must be a JSON object, got {type(header).__name__}")
        ids = {"job_id": _str_or_none(header.get("job_id")),
               "request_id": _str_or_none(header.get("request_id"))}
        try:
            specs = check_array_specs(header.get("arrays", []), self.max_array_bytes)
        except ProtocolError as e:
            self._after_error = True
            self._discard_bytes = _declared_bytes(header.get("arrays"))
            e.job_id, e.request_id = ids["job_id"], ids["request_id"]
            raise
        self._after_error = False
        self._header = header
        for name, dtype, shape, nbytes in specs:
            array = np.empty(shape, dtype=dtype)
            view = memoryview(array.reshape(-1)).cast("B") if nbytes else memoryview(b"")
            self._pending.append([name, array, view, 0])
        return self._complete_if_done()

    def _feed_bytes(self, data: memoryview) -> Optional[tuple]:
        if self._header is None:
            if self._discard_bytes > 0:
                self._discard_bytes = max(0, self._discard_bytes - len(data))
                return None
            if self._after_error:
                return None
            self._after_error = True
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "binary frame without a message header before it")
        name, array, view, filled = self._pending[0]
        if filled + len(data) > len(view):
            header = self._header
            self._reset()
            self._after_error = True
            raise ProtocolError(ErrorCode.BAD_MESSAGE,
                                f"array {name!r} got more bytes than its dtype and shape declare "
                                f"({filled + len(data)} > {len(view)}); frames must not span arrays",
                                job_id=_str_or_none(header.get("job_id")),
                                request_id=_str_or_none(header.get("request_id")))
        view[filled:filled + len(data)] = data
        self._pending[0][3] = filled + len(data)
        return self._complete_if_done()

    def _complete_if_done(self) -> Optional[tuple]:
        while self._pending and self._pending[0][3] == len(self._pending[0][2]):
            name, array, _, _ = self._pending.pop(0)
            self._arrays[name] = array
        if self._pending:
            return None
        message = (self._header, self._arrays)
        self._reset()
        return message

    def _reset(self) -> None:
        self._header = None
        self._pending = []
        self._arrays = {}
        self._discard_bytes = 0


def _str_or_none(value) -> Optional[str]:
    return value if isinstance(value, str) else None


def _declared_bytes(specs) -> int:
    """Bytes a refused header said would follow (0 if it cannot be worked out)."""
    total = 0
    try:
        for spec in specs or []:
            total += int(np.prod(spec["shape"], dtype=np.int64)) * np.dtype(spec["dtype"]).itemsize
    except (TypeError, ValueError, KeyError):
        return 0
    return max(total, 0)
