"""`nnmamba serve` as a remote server: tokens, TLS, malformed and oversized frames, timeouts."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from nnmamba.errors import ModelError
from nnmamba.volume import Geometry
from nnmamba.worker import WorkerAuthError, WorkerBusyError, WorkerClient, WorkerError, WorkerTimeoutError
from nnmamba.worker.protocol import MAX_FRAME_BYTES
from worker_helpers import TASK_MODEL, make_volume, model_paths

TOKEN = "remote-test-token-0123456789abcdef"
READY = "NNMAMBA_WORKER_READY "


class Server:
    """`nnmamba serve` started the way an administrator would, stopped with SIGTERM."""

    def __init__(self, *args: str, env=None):
        import os

        self.process = subprocess.Popen([sys.executable, "-m", "nnmamba", "serve", "--port", "0", "--announce",
                                         "--device", "cpu", "--threads", "1", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=dict(os.environ, **(env or {})))
        line = self.process.stdout.readline()
        if not line.startswith(READY):
            self.process.kill()
            raise AssertionError(f"server did not start: {line!r} {self.process.stderr.read()}")
        self.port = json.loads(line[len(READY):])["port"]

    def stop(self) -> int:
        self.process.terminate()
        try:
            return self.process.wait(timeout=20)
        finally:
            self.process.kill()
            self.process.stdout.close()
            self.process.stderr.close()


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("remote") / "token.txt"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture(scope="module")
def server(token_file, worker_models_dir):
    server = Server("--host", "127.0.0.1", "--token-file", str(token_file), "--max-job-mb", "1",
                    env={"NNMAMBA_MODELS_DIR": str(worker_models_dir)})
    yield server
    assert server.stop() == 0


def raw_connection(port: int, token: str = TOKEN):
    return ws_connect(f"ws://127.0.0.1:{port}/", additional_headers={"Authorization": f"Bearer {token}"},
                      compression=None, proxy=None, max_size=MAX_FRAME_BYTES, open_timeout=10)


def receive_header(websocket) -> dict:
    return json.loads(websocket.recv(timeout=30))


def submit_header(**fields) -> str:
    header = {"type": "submit", "protocol": 1, "token": TOKEN, "job_id": "raw-job", "tasks": ["classification"],
              "geometry": Geometry.identity().to_dict(),
              "arrays": [{"name": "volume", "dtype": "<i2", "shape": [16, 16, 16]}]}
    header.update(fields)
    return json.dumps(header)


@pytest.mark.parametrize("token", ["", "wrong-token"])
def test_a_client_without_the_right_token_is_refused(server, token):
    with pytest.raises(WorkerAuthError, match="refused the token"):
        WorkerClient.connect("127.0.0.1", server.port, token)


def test_a_client_with_the_token_runs_a_job(server, worker_models_dir):
    with WorkerClient.connect("127.0.0.1", server.port, TOKEN) as client:
        results = client.run(make_volume(), ["classification"], {"classification": TASK_MODEL["classification"]},
                             timeout=120)
        assert results["classification"].probabilities.shape == (3,)


def test_a_message_with_a_wrong_token_is_refused_even_on_an_authenticated_connection(server):
    with raw_connection(server.port) as websocket:
        websocket.send(json.dumps({"type": "status", "protocol": 1, "token": "nope", "request_id": "r1"}))
        reply = receive_header(websocket)
        assert (reply["type"], reply["ok"], reply["error_code"]) == ("reply", False, "unauthorized")


def test_malformed_messages_get_error_replies_and_the_connection_keeps_serving(server):
    with raw_connection(server.port) as websocket:
        websocket.send("{this is not json")
        event = receive_header(websocket)
        assert (event["kind"], event["error_code"]) == ("error", "bad_message") and "JSON" in event["message"]

        websocket.send(submit_header(arrays=[{"name": "volume", "dtype": "|O", "shape": [16, 16, 16]}]))
        websocket.send(b"\0" * (16 * 16 * 16 * 8))   # its bytes follow anyway: skipped quietly
        event = receive_header(websocket)
        assert (event["job_id"], event["error_code"]) == ("raw-job", "bad_message") and "'|O'" in event["message"]

        websocket.send(submit_header(job_id="too-big", arrays=[{"name": "volume", "dtype": "<f4",
                                                                "shape": [128, 128, 128]}]))
        event = receive_header(websocket)
        assert (event["job_id"], event["error_code"]) == ("too-big", "too_large")
        assert "limit of 1.0 MiB" in event["message"]

        websocket.send(submit_header(job_id="short"))
        websocket.send(b"\0" * 100)
        websocket.send(submit_header(job_id="next", type="status"))
        event = receive_header(websocket)
        assert (event["job_id"], event["error_code"]) == ("short", "bad_message")
        assert "before all array bytes" in event["message"]

        websocket.send(json.dumps({"type": "status", "protocol": 99, "token": TOKEN, "request_id": "r2"}))
        reply = receive_header(websocket)
        assert reply["error_code"] == "version_mismatch" and "protocol 99" in reply["message"]

        websocket.send(json.dumps({"type": "reformat_disk", "protocol": 1, "token": TOKEN, "request_id": "r3"}))
        assert receive_header(websocket)["error_code"] == "bad_message"

        websocket.send(json.dumps({"type": "status", "protocol": 1, "token": TOKEN, "request_id": "r4"}))
        reply = receive_header(websocket)
        assert reply["ok"] and reply["request_id"] == "r4" and reply["data"]["engine"] in ("ready", "starting")


def test_a_wrong_dtype_volume_is_refused_by_the_worker(server):
    with raw_connection(server.port) as websocket:
        websocket.send(submit_header(arrays=[{"name": "volume", "dtype": "<u8", "shape": [4, 4, 4]}]))
        websocket.send(np.zeros((4, 4, 4), np.uint64).tobytes())
        event = receive_header(websocket)
        assert event["error_code"] == "bad_message" and "dtype uint64" in event["message"]


def test_a_frame_over_the_size_limit_closes_only_that_connection(server):
    with raw_connection(server.port) as websocket:
        websocket.send(submit_header())
        websocket.send(b"\0" * (MAX_FRAME_BYTES + 1))
        with pytest.raises(ConnectionClosed) as closed:
            websocket.recv(timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    with WorkerClient.connect("127.0.0.1", server.port, TOKEN) as client:
        assert client.status()["protocol"] == 1


def test_a_remote_client_can_name_only_served_models_and_cannot_probe_server_files(server, worker_models_dir):
    """Issue 22 item 7: a path named as a model was read by the worker (which told whether the file
    existed, and would load the weights any planted card points at)."""
    real_card = model_paths(worker_models_dir, ["classification"])["classification"]
    messages = {}
    with WorkerClient.connect("127.0.0.1", server.port, TOKEN) as client:
        for name in ["/etc/passwd", "/no/such/file.json", real_card, "../" * 8 + "etc/hostname", "TEST-CLS"]:
            with pytest.raises(ModelError) as refused:
                client.run(make_volume(), ["classification"], {"classification": name}, timeout=60)
            messages[name] = str(refused.value).replace(repr(name), "NAME")
        # Every refusal reads the same, whatever the name points at on the server.
        assert len(set(messages.values())) == 1, messages
        assert "not served by this worker" in messages["/etc/passwd"] and "test-cls" in messages["/etc/passwd"]
        assert all("path" not in summary for summary in client.list_models())
        assert client.status()["protocol"] == 1


def wait_until_queued(client, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while client.status()["queued"] != count:
        assert time.monotonic() < deadline, f"the worker did not queue {count} jobs: {client.status()}"
        time.sleep(0.05)


def test_a_full_queue_answers_busy_and_the_worker_runs_what_it_took(token_file, worker_models_dir):
    """Issue 22 item 8: without a bound, one authenticated client could queue jobs (each holding
    its volume) until the server ran out of memory. Every bound is hit once: one client's share,
    the bytes of all waiting jobs, the number of waiting jobs."""
    server = Server("--token-file", str(token_file), "--max-job-mb", "1", "--max-queued-jobs", "3",
                    "--max-queued-mb", "2", "--max-queued-mb-per-client", "1.5",
                    env={"NNMAMBA_MODELS_DIR": str(worker_models_dir)})
    big, small = make_volume((80, 80, 80)), make_volume((16, 16, 16))   # 0.98 MiB and 8 KiB of int16
    classify = {"classification": TASK_MODEL["classification"]}
    try:
        with WorkerClient.connect("127.0.0.1", server.port, TOKEN) as first, \
                WorkerClient.connect("127.0.0.1", server.port, TOKEN) as second, \
                WorkerClient.connect("127.0.0.1", server.port, TOKEN) as third:
            deadline = time.monotonic() + 60
            while first.status()["engine"] != "ready" and time.monotonic() < deadline:
                time.sleep(0.2)
            # A long job (mirrored 8 times) keeps the runner busy while the queue fills.
            accepted = [(first, first.submit(big, ["segmentation"], {"segmentation": TASK_MODEL["segmentation"]},
                                             options={"tta": True}))]
            while first.status()["running"] != accepted[0][1]:   # taken off the queue: it runs
                assert time.monotonic() < deadline, first.status()
                time.sleep(0.05)
            accepted.append((first, first.submit(big, ["classification"], classify)))
            with pytest.raises(WorkerBusyError, match="more than the 1.5 MiB one client may queue"):
                first.run(big, ["classification"], classify, timeout=60)
            accepted.append((second, second.submit(big, ["classification"], classify)))
            wait_until_queued(first, 2)              # another connection: its submit may still travel
            with pytest.raises(WorkerBusyError, match="more than its limit of 2.0 MiB"):
                third.run(big, ["classification"], classify, timeout=60)
            accepted.append((third, third.submit(small, ["classification"], classify)))
            wait_until_queued(first, 3)
            with pytest.raises(WorkerBusyError, match="3 jobs are waiting"):
                third.run(small, ["classification"], classify, timeout=60)
            first.cancel(accepted[0][1])             # the long job has served its purpose
            finished = {}
            for client, job in accepted:
                while job not in finished and time.monotonic() < deadline + 120:
                    for event in client.poll(timeout=1.0):
                        if event.kind.is_terminal:
                            finished[event.job_id] = event.kind.value
            assert finished == {job: "cancelled" if n == 0 else "result" for n, (_, job) in enumerate(accepted)}
            assert first.status()["queued"] == 0
    finally:
        assert server.stop() == 0


def test_the_server_refuses_a_short_token_file(tmp_path):
    short = tmp_path / "token.txt"
    short.write_text("abc")
    result = subprocess.run([sys.executable, "-m", "nnmamba", "serve", "--port", "0", "--token-file", str(short)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "at least 16" in result.stderr and "Traceback" not in result.stderr


def test_the_server_refuses_a_short_token_in_the_environment_by_the_same_rule():
    """Issue 22 item 9: NNMAMBA_WORKER_TOKEN=a was accepted where a token file needed 16 characters."""
    import os

    result = subprocess.run([sys.executable, "-m", "nnmamba", "serve", "--port", "0"], capture_output=True,
                            text=True, timeout=60, env=dict(os.environ, NNMAMBA_WORKER_TOKEN="a"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "NNMAMBA_WORKER_TOKEN has 1 characters; use at least 16" in result.stderr


def test_the_server_refuses_plain_text_beyond_this_machine_unless_allowed(token_file):
    """Issue 22 item 9: listening beyond loopback without TLS was only a warning. The refusal comes
    before anything listens (nothing binds to other interfaces in this test)."""
    result = subprocess.run([sys.executable, "-m", "nnmamba", "serve", "--port", "0", "--host", "0.0.0.0",
                             "--token-file", str(token_file)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "without --certfile" in result.stderr and "--allow-plaintext" in result.stderr


def test_an_idle_server_with_an_idle_timeout_exits_by_itself(token_file):
    server = Server("--token-file", str(token_file), "--idle-timeout", "1")
    assert server.process.wait(timeout=30) == 0
    server.stop()


def test_connecting_to_a_closed_port_says_so():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(WorkerError, match=f"cannot connect to a worker at 127.0.0.1:{port}"):
        WorkerClient.connect("127.0.0.1", port, TOKEN, timeout=5)


def test_a_server_that_never_answers_times_out_on_connect():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        started = time.monotonic()
        with pytest.raises(WorkerTimeoutError, match="within 1 s"):
            WorkerClient.connect("127.0.0.1", listener.getsockname()[1], TOKEN, timeout=1)
        assert time.monotonic() - started < 10


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_tls_with_a_self_signed_certificate_trusted_by_the_client(tmp_path, token_file):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
    server = Server("--token-file", str(token_file), "--certfile", str(cert), "--keyfile", str(key))
    try:
        with WorkerClient.connect("127.0.0.1", server.port, TOKEN, tls_ca=str(cert)) as client:
            assert client.status()["protocol"] == 1
        with pytest.raises(WorkerError, match="certificate"):
            WorkerClient.connect("127.0.0.1", server.port, TOKEN, tls=True, timeout=5)
        with pytest.raises(WorkerError):
            WorkerClient.connect("127.0.0.1", server.port, TOKEN, timeout=5)
    finally:
        assert server.stop() == 0
