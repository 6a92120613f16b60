"""Fuzz a real worker (`nnmamba serve`, a shared server on 127.0.0.1) with generated protocol
frames: headers of every message type with wrong, missing and hostile fields (tokens, versions,
ids, tasks, model names and paths, options, geometries), array declarations of any dtype and
shape, and binary frames of the right, too few or too many bytes. Invariants: every answer is a
typed event or reply whose error code is a known, specific one (never "internal", the code of a
bug); a job ends in a result or a specific error; the connection and the worker keep serving."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import event, example, given, note, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from conftest import REPO, child_env, examples
from nnmamba.volume import Geometry
from nnmamba.worker import WorkerClient
from nnmamba.worker.protocol import MAX_FRAME_BYTES, WIRE_DTYPES, ErrorCode

TOKEN = "fuzz-token-0123456789abcdef-0123"
READY = "NNMAMBA_WORKER_READY "
SERVED = ["tiny-seg", "tiny-landmarks", "tiny-cls"]
TASK_OF = {"tiny-seg": "segmentation", "tiny-landmarks": "landmarks", "tiny-cls": "classification"}
KNOWN_CODES = {code.value for code in ErrorCode} - {ErrorCode.INTERNAL.value}
_ids = itertools.count()


@pytest.fixture(scope="module")
def worker(fuzz_models_dir, tmp_path_factory):
    """`nnmamba serve` as an administrator starts a shared worker (token file, small limits)."""
    token_file = tmp_path_factory.mktemp("fuzz-worker") / "token.txt"
    token_file.write_text(TOKEN)
    process = subprocess.Popen([sys.executable, "-m", "nnmamba", "serve", "--port", "0", "--announce", "--device",
                                "cpu", "--threads", "1", "--token-file", str(token_file), "--max-job-mb", "1",
                                "--max-queued-jobs", "4"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, cwd=REPO, env=child_env(NNMAMBA_MODELS_DIR=str(fuzz_models_dir)))
    line = process.stdout.readline()
    assert line.startswith(READY), line
    port = json.loads(line[len(READY):])["port"]
    with WorkerClient.connect("127.0.0.1", port, TOKEN) as client:   # let the engine finish starting
        deadline = time.monotonic() + 120
        while client.status()["engine"] == "starting" and time.monotonic() < deadline:
            time.sleep(0.2)
    yield process, port
    process.terminate()
    assert process.wait(timeout=30) == 0
    process.stdout.close()


# ---- strategies ----------------------------------------------------------------------------------

HOSTILE = st.sampled_from([None, 5, -1, 1.5, True, "", "x" * 300, [], {}, "\u00e9\u00e8", "../../etc/passwd"])
OPTIONS = st.dictionaries(
    st.sampled_from(["device", "tta", "overlap", "precision", "tile_batch", "stitch_device", "scan_backend",
                     "__class__"]),
    st.one_of(st.sampled_from(["cpu", "auto", "cuda", "cuda:7", "meta", "mps", "cpu:0", "fp32", "bf16"]),
              st.sampled_from([0, 1, 2, 10 ** 9, -3, 0.5, 1.0, 0.99, float("nan"), True, False]), HOSTILE),
    max_size=3)


@st.composite
def geometries(draw):
    """A proper geometry: axis-aligned or oblique."""
    if draw(st.booleans()):
        return Geometry.identity(spacing=(2.0, 2.0, 2.0)).to_dict()
    c, s = np.cos(0.4), np.sin(0.4)
    return Geometry([1.0, 2.0, 3.0], [2.5, 2.0, 3.0], [[c, -s, 0], [s, c, 0], [0, 0, 1]]).to_dict()


@st.composite
def hostile_geometries(draw):
    choice = draw(st.sampled_from(["ijk_to_ras", "hostile numbers", "junk"]))
    if choice == "ijk_to_ras":
        matrix = np.eye(4)
        matrix[:3, :3] *= draw(st.sampled_from([2.0, 0.0, -1.0, 1e-9]))
        return {"ijk_to_ras": matrix.tolist()}
    if choice == "hostile numbers":
        number = st.sampled_from([0.0, -1.0, 1e308, 1e-300, 2.0])
        return {"origin": [draw(number) for _ in range(3)], "spacing": [draw(number) for _ in range(3)],
                "direction": [[draw(number) for _ in range(3)] for _ in range(3)]}
    return draw(st.one_of(HOSTILE, st.fixed_dictionaries({"origin": HOSTILE, "spacing": HOSTILE})))


ASPECTS = ["type", "protocol", "token", "job_id", "tasks", "models", "options", "geometry", "dtype", "shape",
           "array name", "content", "text", "frames"]


@st.composite
def messages(draw) -> dict:
    """A valid submit (or now and then another request), then none, one or a few of its aspects
    made hostile; returned as the header text frame and the binary frames to send."""
    bad = set(draw(st.lists(st.sampled_from(ASPECTS), max_size=3)))
    job_id = f"job-{next(_ids)}"
    tasks = draw(st.lists(st.sampled_from(["segmentation", "landmarks", "classification"]), min_size=1,
                          max_size=2, unique=True))
    models = {task: name for task, name in zip(tasks, [draw(st.sampled_from(SERVED)) for _ in tasks])
              if TASK_OF[name] == task} if draw(st.booleans()) else {}
    header = {"type": "submit", "protocol": 1, "token": TOKEN, "job_id": job_id, "request_id": f"request-{job_id}",
              "tasks": tasks, "models": models, "options": {}, "geometry": draw(geometries())}
    if "type" in bad:
        header["type"] = draw(st.sampled_from(["status", "cancel", "list_models", "echo", "event", "reply",
                                               "format_disk", 5, None]))
    if "protocol" in bad:
        header["protocol"] = draw(st.sampled_from([2, "1", None, 0]))
    if "token" in bad:
        header["token"] = draw(st.sampled_from(["wrong", None, 5, TOKEN + " "]))
    if "job_id" in bad:
        header["job_id"] = draw(st.sampled_from(["", "x" * 200, None, 7]))
    if "tasks" in bad:
        header["tasks"] = draw(st.one_of(HOSTILE, st.just(["everything"]), st.just(["classification"] * 2)))
    if "models" in bad:
        header["models"] = draw(st.one_of(HOSTILE, st.fixed_dictionaries({tasks[0]: st.one_of(HOSTILE, st.sampled_from(
            ["/etc/passwd", str(REPO / "models" / "brain-structures-seg" / "model.json"), "TINY-CLS", "..",
             "tiny-cls\0", "tiny-seg" if tasks[0] != "segmentation" else "tiny-cls"]))})))
    if "options" in bad:
        header["options"] = draw(st.one_of(OPTIONS, HOSTILE))
    if "geometry" in bad:
        header["geometry"] = draw(hostile_geometries())

    dtype = np.dtype(draw(st.sampled_from(["<i2", "<f4", "|u1", "<f8", "<u2"])))
    if "dtype" in bad:
        dtype = np.dtype(draw(st.sampled_from([d for d in WIRE_DTYPES if d not in ("<i2", "<f4")])))
    shape = [draw(st.integers(2, 12)) for _ in range(3)]
    if "shape" in bad:
        shape = draw(st.sampled_from([[2, 0, 4], [1, 8, 8], [8], [8, 8], [2, 2, 4, 4, 4], [3, 6, 6, 6], [1, 1, 1]]))
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    array = rng.uniform(0, 100, shape).astype(dtype)
    if "content" in bad:
        kind = draw(st.sampled_from(["constant", "nan", "inf"]))
        if kind == "constant" or dtype.kind != "f":
            array[...] = 1
        elif array.size:
            array.flat[0] = np.nan if kind == "nan" else np.inf
    spec = {"name": "volume", "dtype": dtype.str, "shape": shape}
    if "array name" in bad:
        spec = draw(st.sampled_from([dict(spec, name="other"), dict(spec, dtype="|O"), {"name": "volume"},
                                     dict(spec, shape=[10 ** 9, 10 ** 9]), dict(spec, shape=[-1, 4, 4]), "volume"]))
    header["arrays"] = [spec]
    text = json.dumps(header)
    text_shape = draw(st.sampled_from(["not json", "nested", "a list", "huge"])) if "text" in bad else "json"
    text = {"not json": text[: len(text) // 2], "nested": "[" * 100000 + "]" * 100000,
            "a list": json.dumps([header]), "huge": json.dumps({"type": "status", "pad": "x" * (1 << 20)})
            }.get(text_shape, text)
    data = array.tobytes()
    frame_shape = draw(st.sampled_from(["split", "short", "extra", "none"])) if "frames" in bad else "exact"
    payload = {"exact": [data], "split": [data[: len(data) // 2], data[len(data) // 2:]], "short": [data[:-1]],
               "extra": [data, b"\0" * 16], "none": []}[frame_shape]
    return {"header": header, "text": text, "binary": [p for p in payload if p], "bad": sorted(bad)}


def plain_submit(models: dict) -> dict:
    """A well-formed classification submit naming `models` (for explicit examples)."""
    array = np.random.default_rng(0).uniform(0, 100, (8, 8, 8)).astype("<f4")
    job_id = f"job-{next(_ids)}"
    header = {"type": "submit", "protocol": 1, "token": TOKEN, "job_id": job_id, "request_id": f"request-{job_id}",
              "tasks": ["classification"], "models": models, "options": {},
              "geometry": Geometry.identity(spacing=(2.0, 2.0, 2.0)).to_dict(),
              "arrays": [{"name": "volume", "dtype": "<f4", "shape": [8, 8, 8]}]}
    return {"header": header, "text": json.dumps(header), "binary": [array.tobytes()], "bad": ["models"]}


# ---- the test -----------------------------------------------------------------------------------

def answers_until_probe(websocket, probe_id: str, job_id, deadline: float) -> list:
    """Every message received until the probe's reply and (for a submit) the job's terminal event."""
    received, probe_answered, job_done = [], False, not isinstance(job_id, str) or not job_id
    while not (probe_answered and job_done):
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer in time; received so far: {received}")
        try:
            frame = websocket.recv(timeout=5)
        except TimeoutError:
            if not probe_answered:    # the probe may have ended an unfinished message: ask again
                websocket.send(json.dumps({"type": "status", "protocol": 1, "token": TOKEN, "request_id": probe_id}))
            continue
        if not isinstance(frame, str):
            continue                   # the arrays of an echo reply or a result
        message = json.loads(frame)
        received.append(message)
        if message.get("type") == "reply" and message.get("request_id") == probe_id and message.get("ok"):
            probe_answered = True
        if message.get("type") == "event" and message.get("job_id") == job_id and message.get("kind") != "progress":
            job_done = True
        if message.get("type") == "event" and message.get("job_id") in (None, job_id) \
                and message.get("kind") == "error" and message.get("error_code"):
            job_done = True            # refused before it became a job
    return received


@settings(max_examples=examples(60))
@given(message=messages())
@example(message=plain_submit({"classification": "/etc/passwd"}))      # issue 22 item 7: probing a file
@example(message=plain_submit({"classification": str(REPO / "models" / "scan-type-cls" / "model.json")}))
def test_any_frames_get_specific_answers_and_the_worker_keeps_serving(worker, message):
    process, port = worker
    note(f"made hostile: {message['bad']}; sent header {message['text'][:600]!r}, binary frames "
         f"{[len(b) for b in message['binary']]}")
    probe_id = f"probe-{next(_ids)}"
    submitted = message["header"]["job_id"] if message["header"]["type"] == "submit" else None
    with connect(f"ws://127.0.0.1:{port}/", additional_headers={"Authorization": f"Bearer {TOKEN}"},
                 compression=None, proxy=None, max_size=MAX_FRAME_BYTES, open_timeout=30) as websocket:
        try:
            websocket.send(message["text"])
            for frame in message["binary"]:
                websocket.send(frame)
            # Twice: an unfinished message takes the first probe as its end (and drops it).
            for _ in range(2):
                websocket.send(json.dumps({"type": "status", "protocol": 1, "token": TOKEN, "request_id": probe_id}))
            received = answers_until_probe(websocket, probe_id, submitted, time.monotonic() + 180)
        except ConnectionClosed as closed:
            raise AssertionError(f"the worker closed the connection: {closed}") from closed
    note(f"received {json.dumps(received)[:3000]}")
    outcomes = [a.get("error_code") or a.get("kind") for a in received
                if a.get("job_id") == submitted or a.get("request_id") == message["header"].get("request_id")]
    event(next((o for o in outcomes if o not in (None, "progress")), "no answer of its own"))
    for answer in received:
        assert answer.get("type") in ("event", "reply"), answer
        code = answer.get("error_code")
        assert code is None or code in KNOWN_CODES, f"error code {code!r} (internal = a bug): {answer}"
        # A shared worker never reads a file a client names, so no answer can say what is in one.
        assert "model card" not in (answer.get("message") or ""), f"a client probed a server file: {answer}"
        if answer.get("type") == "event" and answer.get("kind") == "result":
            assert {result["task"] for result in answer["results"]} == set(message["header"]["tasks"])
    assert process.poll() is None, "the worker process ended"
    with WorkerClient.connect("127.0.0.1", port, TOKEN) as client:
        assert client.status()["protocol"] == 1
