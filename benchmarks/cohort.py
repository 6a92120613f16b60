"""Cohort inference throughput: cases per second on N = 1, 2, 4, 8 GPUs under torchrun, and the
scaling efficiency.

    python benchmarks/cohort.py [--gpus 1 2 4 8] [--cases 32] [--model brain-structures-seg]
                                [--sizes 96 128 160] [--device auto] [--tta] [--stage predictor|network]

For each N (N larger than the GPUs present is printed as not run) it starts
`torchrun --standalone --nproc_per_node N benchmarks/cohort.py --worker ...`. Every worker is one
rank of a cohort as `nnmamba predict` runs it (nnmamba/commands/cohort.py): the same process
group, the same split of the cases (`balanced_shares`, by size), the same device per rank
(`rank_device`: cuda:LOCAL_RANK) and the same `Predictor`. Each rank warms up on one volume (model
load, kernel compilation), waits at a barrier, then runs its share; the wall time is from the
barrier until the slowest rank has finished. cases/s = cases / wall time;
efficiency(N) = cases/s(N) / (N * cases/s(1)).

`--stage predictor` (default) times the whole `Predictor.run` per case (resampling to the card's
grid, normalisation, sliding window, softmax, labels back on the input grid); it needs SimpleITK.
`--stage network` times only the card's network over the sliding window on the working grid
(same tiles, overlap, tile batch and autocast as the Predictor, no resampling), for machines
without SimpleITK.

The cases are made in memory (head-like ellipsoids with noise, cubes of `--sizes` voxels at the
card's spacing, in turn) and are neither read from nor written to disk: the GPU machines have no
SimpleITK, and file I/O is per rank. So this measures the share split and the per-GPU work of a
cohort, not the file system.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULT_TAG = "COHORT_RESULT "


def synthetic_volume(edge: int, spacing: float, seed: int):
    """A (1, edge, edge, edge) head-like volume: bright shell, darker inside, noise."""
    import numpy as np

    from nnmamba.volume import Geometry, Volume

    rng = np.random.default_rng(seed)
    axis = np.linspace(-1, 1, edge, dtype=np.float32)
    k, j, i = np.meshgrid(axis, axis, axis, indexing="ij")
    r = np.sqrt(i ** 2 + j ** 2 + k ** 2)
    array = np.where(r < 0.9, 300.0, 0.0) + np.where(r < 0.7, -100.0, 0.0)
    array = array + rng.normal(0, 20, size=array.shape) * (r < 0.9)
    return Volume(array[None].astype(np.float32), Geometry.identity(spacing=[spacing] * 3))


def predictor_runner(card, device: str, args):
    """case volume -> None, through the Predictor users run (needs SimpleITK, for resampling)."""
    try:
        import SimpleITK  # noqa: F401
    except ImportError as error:
        raise RuntimeError("SimpleITK is not importable here, and the Predictor resamples with it: "
                           "pip install SimpleITK, or pass --stage network to time the network's "
                           "sliding window alone") from error
    from nnmamba.inference import InferenceOptions, Predictor

    predictor = Predictor(InferenceOptions(device=device, tta=args.tta), scan_backend=args.scan_backend)
    return lambda volume: predictor.run(volume, [card.task], {card.task: card})


def network_runner(card, device: str, args):
    """case volume -> None: the card's network over the sliding window, as the Predictor runs it
    (volumes are made on the card's grid already; z-scored here instead of `normalize`)."""
    import torch

    from nnmamba.inference import InferenceOptions
    from nnmamba.inference.sliding_window import sliding_window
    from nnmamba.models import load_model

    if card.task not in ("segmentation", "landmarks"):
        raise ValueError(f"--stage network times dense networks; {card.name} does {card.task}")
    options = InferenceOptions(device=device, tta=args.tta)
    network = load_model(card, torch.device(device), scan_backend=args.scan_backend)
    out_channels = (card.hyperparameters["number_classes"] if card.task == "segmentation" else len(card.landmarks))
    mirror_axes = card.mirror_axes if args.tta else ()
    on_cuda = device.startswith("cuda") and torch.cuda.is_bf16_supported()
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if on_cuda else None

    def run(volume) -> None:
        image = torch.from_numpy(volume.array)
        image = (image - image.mean()) / image.std()
        with torch.no_grad():
            sliding_window(network, image, tuple(reversed(card.patch_size)), out_channels,
                           overlap=options.overlap, tile_batch=options.tile_batch, device=torch.device(device),
                           stitch_device=torch.device(device), mirror_axes=mirror_axes, autocast=autocast)

    return run


def worker(args) -> int:
    import torch

    from nnmamba.commands.cohort import CohortGroup, balanced_shares, rank_device
    from nnmamba.model_card import find_model

    group = CohortGroup()
    try:
        card = find_model(args.model)
        spacing = float(card.spacing_mm[0])
        edges = [args.sizes[n % len(args.sizes)] for n in range(args.cases)]
        share = balanced_shares([edge ** 3 for edge in edges], group.world_size)[group.rank]
        device = rank_device(args.device, group.local_rank)
        run_case = (predictor_runner if args.stage == "predictor" else network_runner)(card, device, args)
        run_case(synthetic_volume(max(args.sizes), spacing, seed=10_000 + group.rank))  # warm-up
        volumes = [synthetic_volume(edges[n], spacing, seed=n) for n in share]
        synchronize = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        synchronize()
        group.all_gather(None)  # barrier: every rank starts together
        start = time.perf_counter()
        for volume in volumes:
            run_case(volume)
        synchronize()
        seconds = time.perf_counter() - start
        per_rank = group.all_gather({"rank": group.rank, "device": device, "cases": len(volumes),
                                     "seconds": seconds})
        if group.rank == 0:
            wall = max(r["seconds"] for r in per_rank)
            print(RESULT_TAG + json.dumps({"world_size": group.world_size, "cases": args.cases, "wall_s": wall,
                                           "ranks": per_rank, "model": card.name, "stage": args.stage,
                                           "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda")
                                           else "cpu"}), flush=True)
    finally:
        group.close()
    return 0


def launch(n: int, args) -> dict:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
               str(Path(__file__).resolve()), "--worker", "--cases", str(args.cases), "--model", args.model,
               "--device", args.device, "--scan-backend", args.scan_backend, "--stage", args.stage,
               "--sizes", *map(str, args.sizes)] + (["--tta"] if args.tta else [])
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("OMP_NUM_THREADS", "1" if args.device == "cpu" else "4")
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_TAG)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"torchrun with {n} process(es) failed (exit {done.returncode}):\n"
                           f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(lines[-1][len(RESULT_TAG):])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2, 4, 8], help="process counts N")
    parser.add_argument("--cases", type=int, default=32)
    parser.add_argument("--model", default="brain-structures-seg", help="card name or path")
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 128, 160],
                        help="cube edges of the cases, in voxels at the card's spacing")
    parser.add_argument("--device", default="auto", help="auto (one GPU per process) or cpu")
    parser.add_argument("--scan-backend", default="auto")
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--stage", choices=["predictor", "network"], default="predictor",
                        help="time the whole Predictor (needs SimpleITK) or the network's sliding window alone")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    import torch

    available = torch.cuda.device_count() if args.device != "cpu" else os.cpu_count()
    print(f"cohort benchmark: {args.cases} cases of {args.sizes} voxel cubes, model {args.model}, "
          f"device {args.device}, tta {args.tta}, stage {args.stage}; torch {torch.__version__}, "
          f"{torch.cuda.device_count()} GPU(s)")
    print(f"{'N':>3} {'cases/s':>9} {'wall s':>8} {'efficiency':>10}  per-rank cases")
    base = None
    for n in args.gpus:
        if n > available:
            print(f"{n:>3} not run: only {available} {'GPU' if args.device != 'cpu' else 'CPU'}(s) here")
            continue
        result = launch(n, args)
        rate = result["cases"] / result["wall_s"]
        if n == 1:
            base = rate
        efficiency = f"{rate / (n * base):10.2f}" if base else f"{'(no N=1)':>10}"
        shares = " ".join(str(r["cases"]) for r in sorted(result["ranks"], key=lambda r: r["rank"]))
        print(f"{n:>3} {rate:9.2f} {result['wall_s']:8.2f} {efficiency}  {shares}  ({result['gpu']})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
