"""Worker benchmark: what the process boundary costs, measured with a real local worker.

    python benchmarks/worker.py [--threads 2] [--repeats 5] [--jobs 10] [--json out.json]

Prints, in one run:
1. transfer of a 512x512x600 int16 volume (300 MiB) to the worker and back (the echo operation:
   the same frames and decoding a job uses), best and median of `--repeats`; also one way (the
   submit path: until the worker has queued the job);
2. per-job overhead: the same job (the shipped classification model on the embedded brain MR
   sample, and the shipped segmentation model on it) through the worker vs `Predictor.run` in
   this process, same device and thread count, runs interleaved; overhead two ways: the median
   of (worker - in-process) over pairs, and the median of (client wall time - the engine time
   the worker reports in the result event), which machine load cannot blur much;
3. a status round trip (the floor of any request).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nnmamba.volume import Geometry, Volume  # noqa: E402
from nnmamba.worker import EventKind, LocalWorker  # noqa: E402

SHAPE_KJI = (600, 512, 512)


def timed(fn, repeats: int) -> list:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def transfer(client, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    array = rng.integers(-1024, 3000, SHAPE_KJI, dtype=np.int16)
    mib = array.nbytes / 2**20

    def round_trip():
        back = client.echo({"volume": array})["volume"]
        if back.dtype != array.dtype or not np.array_equal(back[::37, ::41, ::43], array[::37, ::41, ::43]):
            raise RuntimeError("the echoed volume differs from the one sent")

    round_trip()  # warm-up: first big allocation in both processes
    both = timed(round_trip, repeats)

    volume = Volume(array, Geometry.identity(spacing=(0.7, 0.7, 0.5)))

    def one_way():
        job_id = client.submit(volume, ["classification"], options={"overlap": 0.5})
        while True:   # the "queued" progress event: the worker has the whole volume
            events = client.poll(timeout=30)
            if any(e.job_id == job_id and e.kind is EventKind.PROGRESS for e in events):
                break
        client.cancel(job_id)
        while job_id in client.pending_jobs:
            client.poll(timeout=1)

    one = timed(one_way, repeats)
    return {"volume": "512x512x600 int16", "mib": round(mib, 1),
            "round_trip_best_s": round(min(both), 3), "round_trip_median_s": round(statistics.median(both), 3),
            "round_trip_mib_per_s": round(2 * mib / min(both), 1),
            "to_worker_best_s": round(min(one), 3), "to_worker_median_s": round(statistics.median(one), 3)}


def worker_job(client, volume, task: str) -> tuple:
    """(wall seconds seen by the client, seconds the worker's engine spent) of one job."""
    start = time.perf_counter()
    job_id = client.submit(volume, [task])
    while True:
        for event in client.poll(timeout=1.0):
            if event.job_id == job_id and event.kind.is_terminal:
                if event.kind is not EventKind.RESULT:
                    raise RuntimeError(f"job failed: {event.error_code}: {event.message}")
                return time.perf_counter() - start, event.elapsed_s


def overhead(worker, threads: int, jobs: int) -> list:
    import torch

    from nnmamba.data import sample_volume_path
    from nnmamba.inference import InferenceOptions, Predictor
    from nnmamba.io.volumes import read_volume

    torch.set_num_threads(threads)
    volume = read_volume(sample_volume_path())
    predictor = Predictor(InferenceOptions(device="cpu"))
    client = worker.client()
    rows = []
    for task in ("classification", "segmentation"):
        n = jobs if task == "classification" else max(3, jobs // 4)
        predictor.run(volume, [task])            # warm-up: model load, allocator
        worker_job(client, volume, task)
        local, remote, engine = [], [], []
        for _ in range(n):   # interleaved, so load changes on a shared machine hit both alike
            start = time.perf_counter()
            predictor.run(volume, [task])
            local.append(time.perf_counter() - start)
            wall, spent = worker_job(client, volume, task)
            remote.append(wall)
            engine.append(spent)
        rows.append({"task": task, "volume": "x".join(map(str, volume.shape_kji)) + " " + str(volume.array.dtype),
                     "jobs": n, "in_process_median_s": round(statistics.median(local), 4),
                     "worker_median_s": round(statistics.median(remote), 4),
                     "overhead_ab_ms": round(1000 * statistics.median(r - l for r, l in zip(remote, local)), 1),
                     "overhead_direct_ms": round(1000 * statistics.median(r - e for r, e in zip(remote, engine)), 1)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads, worker and in-process")
    parser.add_argument("--repeats", type=int, default=5, help="transfers to time")
    parser.add_argument("--jobs", type=int, default=10, help="classification jobs to time each way")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    report = {}
    with LocalWorker(device="cpu", threads=args.threads, extra_args=["--max-job-mb", "1024"]) as worker:
        client = worker.client()
        report["status_round_trip_ms"] = round(1000 * statistics.median(timed(client.status, 50)), 2)
        report["transfer"] = transfer(client, args.repeats)
        report["overhead"] = overhead(worker, args.threads, args.jobs)
        report["worker_rss_mb"] = client.status()["rss_mb"]

    t = report["transfer"]
    print(f"status request round trip: {report['status_round_trip_ms']} ms (median of 50)")
    print(f"{t['volume']} ({t['mib']} MiB) to the worker and back: best {t['round_trip_best_s']} s, "
          f"median {t['round_trip_median_s']} s ({t['round_trip_mib_per_s']} MiB/s); target < 2 s")
    print(f"  to the worker only (submit until queued): best {t['to_worker_best_s']} s, "
          f"median {t['to_worker_median_s']} s")
    for row in report["overhead"]:
        print(f"{row['task']} on {row['volume']}: in-process {row['in_process_median_s']} s, through the "
              f"worker {row['worker_median_s']} s (medians of {row['jobs']}, interleaved)")
        print(f"  per-job overhead: {row['overhead_ab_ms']} ms (worker - in-process, median of pairs); "
              f"{row['overhead_direct_ms']} ms (client wall time - worker engine time)")
    print(f"worker RSS at the end: {report['worker_rss_mb']} MiB")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
