"""The real volume reader in a process of its own, for the fuzz tests (`ReaderProcess`).

A C++ abort inside SimpleITK kills the process it happens in; in the test process it would end
the whole run without saying which input did it. Here each path is read by `nnmamba.io.read_volume`
in this child; the parent sees a crash as the child's death (with its signal) and names the input.

Protocol, one JSON object per line: in {"path": hex of the path's bytes}; out {"outcome": "volume",
...facts} or {"outcome": "refused", "type", "message"} or {"outcome": "unexpected", "traceback"}.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import traceback


def describe(path: str) -> dict:
    from nnmamba.errors import InputError
    from nnmamba.io import read_volume

    try:
        volume = read_volume(path)
    except InputError as e:
        return {"outcome": "refused", "type": type(e).__name__, "message": str(e)}
    except Exception:  # noqa: BLE001 - anything else is what the fuzz test looks for
        return {"outcome": "unexpected", "traceback": traceback.format_exc()}
    array = volume.array
    return {"outcome": "volume", "shape": list(array.shape), "dtype": str(array.dtype),
            "finite": bool(array.size and (array == array).all()), "sum": float(array.astype("float64").sum()),
            "min": float(array.min()), "max": float(array.max()),
            "origin": volume.geometry.origin.tolist(), "spacing": volume.geometry.spacing.tolist(),
            "direction": volume.geometry.direction.tolist()}


def serve() -> None:
    for line in sys.stdin:
        path = os.fsdecode(bytes.fromhex(json.loads(line)["path"]))
        print(json.dumps(describe(path)), flush=True)


# A lying header must be refused before the reader allocates what it claims: the child may use
# no more than this (address space), so such an allocation fails the test instead of the machine.
MEMORY_LIMIT_BYTES = 3 << 30


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


class ReaderProcess:
    """Owns the child; `read(path_bytes)` -> the child's answer, or {"outcome": "died" | "hung", ...}.

    The child's stderr (ITK prints warnings there) goes to a file, not a pipe nobody reads: a full
    pipe would block the child and hang the test."""

    def __init__(self, env: dict, timeout_s: float = 60.0):
        self.env = env
        self.timeout_s = timeout_s
        self.process = None
        self.stderr = None

    def _start(self) -> None:
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.stderr, env=self.env, text=True, preexec_fn=_limit_memory)

    def read(self, path: bytes) -> dict:
        if self.process is None or self.process.poll() is not None:
            self._start()
        try:
            self.process.stdin.write(json.dumps({"path": path.hex()}) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass
        ready, _, _ = select.select([self.process.stdout], [], [], self.timeout_s)
        answer = self.process.stdout.readline() if ready else None
        if answer:
            return json.loads(answer)
        if answer is None:
            self.process.kill()
        code = self.process.wait(timeout=30)
        self.stderr.seek(0)
        stderr = self.stderr.read()[-2000:].decode("utf-8", "replace")
        self._discard()
        outcome = "hung" if answer is None else "died"
        return {"outcome": outcome, "returncode": code, "stderr": stderr}

    def _discard(self) -> None:
        for stream in (self.process.stdin, self.process.stdout, self.stderr):
            try:
                stream.close()
            except (OSError, BrokenPipeError):
                pass
        self.process = None

    def close(self) -> None:
        if self.process is not None:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
            self.process.wait(timeout=30)
            self._discard()


if __name__ == "__main__":
    serve()
