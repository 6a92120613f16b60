"""`nnmamba serve`: the persistent inference worker.

Local (what `LocalWorker` starts): `nnmamba serve --port 0 --announce --exit-with-stdin
--allow-model-paths`, token in the environment variable NNMAMBA_WORKER_TOKEN. Remote: `nnmamba serve
--host 0.0.0.0 --port 8765 --token-file token.txt --certfile cert.pem --keyfile key.pem`.

What a shared worker refuses at start: a token (file or environment) shorter than 16 characters,
and listening beyond this machine without TLS unless `--allow-plaintext` says the network is
trusted. Clients of a shared worker name only the models it serves (never paths on its disk), and
its queue is bounded (`--max-queued-jobs`, `--max-queued-mb`, `--max-queued-mb-per-client`): a
full queue answers "busy".
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import secrets
import ssl
import sys
import threading
from pathlib import Path

log = logging.getLogger("nnmamba.serve")

TOKEN_ENV = "NNMAMBA_WORKER_TOKEN"
READY_PREFIX = "NNMAMBA_WORKER_READY "
MIN_TOKEN_CHARACTERS = 16


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (default 127.0.0.1: this machine only; "
                             "0.0.0.0 for all interfaces, only with a token you keep secret and TLS)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (0: any free port; default 8765)")
    parser.add_argument("--token-file", type=Path,
                        help=f"file holding the token clients must present (else ${TOKEN_ENV}, "
                             f"else a random token printed once on stderr)")
    parser.add_argument("--certfile", type=Path, help="TLS certificate (PEM): serve wss:// instead of ws://")
    parser.add_argument("--keyfile", type=Path, help="TLS private key (PEM), if not inside --certfile")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--tile-batch", type=int, help="tiles per forward pass (default: the pipeline's)")
    parser.add_argument("--max-job-mb", type=float, default=2048,
                        help="largest volume a job may send, in MiB (default 2048)")
    parser.add_argument("--max-queued-jobs", type=int, default=32,
                        help="jobs that may wait behind the running one, all clients together; more are "
                             "refused as busy (default 32)")
    parser.add_argument("--max-queued-mb", type=float,
                        help="MiB of volumes all waiting jobs together may hold; more are refused as busy "
                             "(default: twice --max-job-mb)")
    parser.add_argument("--max-queued-mb-per-client", type=float,
                        help="MiB of volumes one client's waiting jobs may hold; more are refused as busy "
                             "(default: --max-job-mb)")
    parser.add_argument("--allow-model-paths", action="store_true",
                        help="let clients name model card files on this machine, not only the served "
                             "models (for a worker serving its own user only, as the Slicer module's)")
    parser.add_argument("--allow-plaintext", action="store_true",
                        help="listen beyond this machine without TLS (only on a network you trust: the "
                             "token and the images travel unencrypted)")
    parser.add_argument("--idle-timeout", type=float,
                        help="exit after this many seconds with no client and no job (default: never)")
    parser.add_argument("--announce", action="store_true",
                        help=f"print '{READY_PREFIX.strip()} {{json}}' on stdout once listening "
                             f"(for the process that started the worker)")
    parser.add_argument("--exit-with-stdin", action="store_true",
                        help="exit when stdin closes (the parent that started the worker has gone)")


def _read_token(args) -> tuple:
    """(token, where it came from); a token given by file or environment must be strong enough."""
    if args.token_file is not None:
        try:
            token = args.token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read the token file {args.token_file}: {e}") from e
        check_token_strength(token, f"the token in {args.token_file}")
        return token, str(args.token_file)
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        check_token_strength(token, f"the token in ${TOKEN_ENV}")
        return token, f"${TOKEN_ENV}"
    return secrets.token_urlsafe(32), "generated"


def check_token_strength(token: str, where: str) -> None:
    """One rule for every token source: at least `MIN_TOKEN_CHARACTERS` characters."""
    if len(token) < MIN_TOKEN_CHARACTERS:
        raise ValueError(f"{where} has {len(token)} characters; use at least {MIN_TOKEN_CHARACTERS} "
                         f"(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")


def check_transport(host: str, tls: bool, allow_plaintext: bool) -> None:
    """Refuse to listen beyond loopback without TLS unless the user allowed plain text."""
    if _is_loopback(host) or tls or allow_plaintext:
        return
    raise ValueError(f"--host {host} lets other machines reach this worker, but without --certfile the token "
                     f"and the images would travel unencrypted; give --certfile/--keyfile, or pass "
                     f"--allow-plaintext if the network is trusted")


def _ssl_context(args):
    if args.certfile is None:
        if args.keyfile is not None:
            raise ValueError("--keyfile needs --certfile")
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(args.certfile), str(args.keyfile) if args.keyfile else None)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"cannot load the TLS certificate {args.certfile} / key {args.keyfile}: {e}") from e
    return context


def _queue_limits(args):
    from nnmamba.worker.runner import QueueLimits

    if args.max_queued_jobs < 0:
        raise ValueError(f"--max-queued-jobs must be >= 0, got {args.max_queued_jobs}")
    per_client_mb = args.max_job_mb if args.max_queued_mb_per_client is None else args.max_queued_mb_per_client
    total_mb = 2 * args.max_job_mb if args.max_queued_mb is None else args.max_queued_mb
    # Each bound must admit one job of the largest size accepted, or such a job could never wait.
    for option, value in (("--max-queued-mb-per-client", per_client_mb), ("--max-queued-mb", total_mb)):
        if value < args.max_job_mb:
            raise ValueError(f"{option} must be at least --max-job-mb ({args.max_job_mb:g}), got {value:g}")
    return QueueLimits(max_jobs=args.max_queued_jobs, max_bytes=int(total_mb * 2**20),
                       max_bytes_per_client=int(per_client_mb * 2**20))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _watch_stdin(server) -> None:
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except (OSError, ValueError):
        pass
    log.info("stdin closed (the parent process has gone): shutting down")
    server.request_shutdown()


def run(args: argparse.Namespace) -> int:
    from nnmamba.kernel_cache import use_kernel_cache
    from nnmamba.worker.engine import PredictorEngine
    from nnmamba.worker.server import WorkerServer

    try:
        token, token_source = _read_token(args)
        ssl_context = _ssl_context(args)
        if args.max_job_mb <= 0:
            raise ValueError(f"--max-job-mb must be > 0, got {args.max_job_mb}")
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        limits = _queue_limits(args)
        check_transport(args.host, ssl_context is not None, args.allow_plaintext)
    except ValueError as e:
        print(f"nnmamba serve: {e}", file=sys.stderr)
        return 2
    if token_source == "generated":
        print(f"nnmamba serve: clients must present this token: {token}", file=sys.stderr, flush=True)
    if not _is_loopback(args.host):
        log.warning("listening on %s: other machines can reach this worker%s", args.host,
                    "" if ssl_context else "; without --certfile the token and images travel unencrypted")
    use_kernel_cache()  # a fresh worker loads the kernels earlier ones compiled instead of compiling them
    defaults = {"tile_batch": args.tile_batch} if args.tile_batch else {}
    engine = PredictorEngine(device=args.device, threads=args.threads, default_options=defaults)
    server = WorkerServer(engine, token, host=args.host, port=args.port, ssl_context=ssl_context,
                          max_job_bytes=int(args.max_job_mb * 2**20), idle_timeout=args.idle_timeout,
                          queue_limits=limits, allow_model_paths=args.allow_model_paths)

    def on_ready(host: str, port: int) -> None:
        if args.announce:
            print(READY_PREFIX + json.dumps({"host": host, "port": port, "pid": os.getpid(),
                                             "tls": ssl_context is not None}), flush=True)
        if args.exit_with_stdin:
            threading.Thread(target=_watch_stdin, args=(server,), name="stdin-watch", daemon=True).start()

    try:
        server.serve(on_ready)
    except OSError as e:
        print(f"nnmamba serve: cannot listen on {args.host}:{args.port}: {e.strerror or e}; "
              f"choose another --port (or 0 for any free one)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
