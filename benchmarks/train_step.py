"""Training-step benchmark (issue 13): upstream nnMamba and ours per scan backend, one run, one card.

    python benchmarks/train_step.py [--upstream .upstream/nnMamba.py] [--steps 20] [--json out.json]
    python benchmarks/train_step.py --skip upstream mamba_ssm torch --channels-last --cudnn-benchmark
    python benchmarks/train_step.py --loss-curve 2000 --backends triton mamba_ssm [--json curve.json]

Step mode: nnMambaSeg(in_ch 1, channels 32, blocks 3, 6 classes), batch 2 x 1 x 128^3, bf16 autocast,
Adam (lr 2e-3), Dice + cross-entropy on random labels; median ms per step between CUDA events after
warm-up, and peak memory, for: upstream nnMamba (lhaof/nnMamba `nnMamba.py`, with compiled
mamba-ssm); ours with the mamba_ssm, triton and torch backends, each configured by its training
execution plan (`nnmamba.execution_plan`), so a figure is what `nnmamba train` runs. The torch row
times fewer steps (it is slow). Each row that cannot run is skipped with the reason. Also says
which backend "auto" picks for training here. `--channels-last` (the plan's channels_last override:
model and batch in channels_last_3d) and `--cudnn-benchmark` (torch.backends.cudnn.benchmark on
while the row runs) apply to our rows only and are named in the row; upstream runs as upstream does.

Loss-curve mode: N steps per backend on a real segmentation task, same initial weights, same seed,
same data order: 64^3 crops (random corner and flips, fixed by --seed) of the embedded sample MR
(`nnmamba/data/sample_brain_mr.nrrd`) resampled to 2 mm, labels background / head (intensity above
the volume mean) / tumour (`Testing/networks/data/brain1_label.nrrd`). Writes per-step losses to
--json and prints mean loss per window, the difference from the first backend per window and the
final window's difference next to the run's own step-to-step noise. Name a backend twice
(`--backends triton triton`) to measure run-to-run noise (cuDNN's backward is not deterministic).
Prints the data time (crop on the GPU) beside the step time.

NRRD files are read by the small reader below, so the GPU machine needs no SimpleITK.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nnmamba.errors import PlanError  # noqa: E402
from nnmamba.execution_plan import make_plan, to_plan_layout  # noqa: E402
from nnmamba.inference.plan_application import apply_plan  # noqa: E402
from nnmamba.networks import build_network  # noqa: E402
from nnmamba.train.losses import dice_ce_loss  # noqa: E402
from timing import call_ms  # noqa: E402

CONFIG = dict(in_ch=1, channels=32, blocks=3, number_classes=6)
BATCH = 2
LEARNING_RATE = 2e-3
SAMPLE = REPO / "nnmamba" / "data" / "sample_brain_mr.nrrd"
TUMOUR = REPO / "Testing" / "networks" / "data" / "brain1_label.nrrd"
NRRD_TYPES = {"short": "i2", "int16": "i2", "int": "i4", "int32": "i4", "float": "f4", "double": "f8",
              "uchar": "u1", "unsigned char": "u1", "ushort": "u2"}


# ---- timing -------------------------------------------------------------------------------------

def training_step(model, optimizer, x: torch.Tensor, target: torch.Tensor, device: torch.device) -> torch.Tensor:
    """One step: bf16 autocast forward, Dice + CE in float32, backward, Adam. Returns the loss."""
    with torch.autocast(device.type, dtype=torch.bfloat16):
        logits = model(x)
    loss = dice_ce_loss(logits, target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def time_training(model, device: torch.device, size: int, steps: int, warmup: int, plan=None) -> dict:
    g = torch.Generator(device=device).manual_seed(1)
    x = torch.randn(BATCH, CONFIG["in_ch"], size, size, size, device=device, generator=g)
    x = x if plan is None else to_plan_layout(x, plan)
    target = torch.randint(0, CONFIG["number_classes"], (BATCH, size, size, size), device=device, generator=g)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    model.train()
    for _ in range(warmup):
        training_step(model, optimizer, x, target, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    times = [call_ms(lambda: training_step(model, optimizer, x, target, device), device) for _ in range(steps)]
    row = {"ms_per_step": statistics.median(times), "steps_timed": steps, "warmup": warmup,
           "min_ms": min(times), "max_ms": max(times)}
    if device.type == "cuda":
        row["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
    return row


def upstream_row(path: Path, device: torch.device, size: int, steps: int, warmup: int) -> dict:
    if device.type != "cuda":
        return {"skipped": "upstream nnMamba needs mamba-ssm, which runs on CUDA only"}
    try:
        import mamba_ssm  # noqa: F401
    except Exception as e:  # ImportError or a broken CUDA build
        return {"skipped": f"mamba-ssm does not import ({type(e).__name__}: {e})"}
    if not path.is_file():
        return {"skipped": f"upstream file {path} not found (fetch lhaof/nnMamba's nnMamba.py there)"}
    from gpu import load_upstream

    torch.manual_seed(0)
    model = load_upstream(path).nnMambaSeg(**CONFIG).to(device)
    return time_training(model, device, size, steps, warmup)


def ours_row(backend: str, device: torch.device, size: int, steps: int, warmup: int,
             channels_last: bool = False, cudnn_benchmark: bool = False) -> dict:
    torch.manual_seed(0)
    model = build_network("nnMambaSeg", **CONFIG).to(device)
    try:
        plan = make_plan(model, device, torch.bfloat16, mode="training", scan_backend=backend,
                         channels_last=True if channels_last else None)
    except PlanError as e:
        return {"skipped": str(e)}
    model = apply_plan(model, plan)
    was = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = cudnn_benchmark or was
    try:
        row = time_training(model, device, size, steps, warmup, plan)
    finally:
        torch.backends.cudnn.benchmark = was
    row["plan"] = plan.as_dict()
    row["cudnn_benchmark"] = cudnn_benchmark or was
    return row


def ours_suffix(args) -> str:
    """What the row name says about --channels-last / --cudnn-benchmark."""
    flags = [name for name, on in (("channels-last", args.channels_last), ("cudnn.benchmark", args.cudnn_benchmark))
             if on]
    return f" [{', '.join(flags)}]" if flags else ""


def step_mode(args, device: torch.device) -> dict:
    size = args.size
    results: Dict[str, object] = {"what": f"training step, nnMambaSeg(1, 32, 3, 6), batch {BATCH} x 1 x {size}^3, "
                                          f"bf16 autocast, Adam, Dice+CE"}
    auto = make_plan("nnMambaSeg", device, torch.bfloat16, mode="training")
    results["auto_training_backend"] = auto.scan_backend
    print(f"'auto' trains with: {auto.scan_backend} ({dict(auto.reasons)['scan_backend']})", flush=True)
    layout = dict(channels_last=args.channels_last, cudnn_benchmark=args.cudnn_benchmark)
    suffix = ours_suffix(args)
    rows = {"upstream + mamba-ssm": ("upstream", lambda: upstream_row(args.upstream, device, size, args.steps,
                                                                      args.warmup)),
            "ours, mamba_ssm" + suffix: ("mamba_ssm", lambda: ours_row("mamba_ssm", device, size, args.steps,
                                                                      args.warmup, **layout)),
            "ours, triton" + suffix: ("triton", lambda: ours_row("triton", device, size, args.steps, args.warmup,
                                                                **layout)),
            "ours, torch" + suffix: ("torch", lambda: ours_row("torch", device, size, args.slow_steps, 1, **layout))}
    for name, (key, run) in rows.items():
        if key in args.skip:
            results[name] = {"skipped": "--skip"}
        else:
            results[name] = run()
        row = results[name]
        if "skipped" in row:
            print(f"{name:22s} skipped: {row['skipped']}", flush=True)
        else:
            print(f"{name:22s} {row['ms_per_step']:10.1f} ms/step (median of {row['steps_timed']}; "
                  f"min {row['min_ms']:.1f}, max {row['max_ms']:.1f})"
                  + (f", peak {row['peak_gib']:.1f} GiB" if "peak_gib" in row else ""), flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    base = results["upstream + mamba-ssm"]
    if "ms_per_step" in base:
        for name in list(rows)[1:]:
            if "ms_per_step" in results[name]:
                ratio = results[name]["ms_per_step"] / base["ms_per_step"]
                results[name]["vs_upstream"] = ratio
                print(f"{name:22s} {ratio:6.2f}x the upstream step", flush=True)
    return results


# ---- loss curve on a real task --------------------------------------------------------------------

def read_nrrd(path: Path) -> tuple:
    """A gzip/raw NRRD with an attached header -> (array (k, j, i), spacing (i, j, k) in mm)."""
    raw = path.read_bytes()
    head, _, body = raw.partition(b"\n\n")
    fields = {}
    for line in head.decode("ascii").splitlines()[1:]:
        if ": " in line and not line.startswith("#"):
            key, value = line.split(": ", 1)
            fields[key.strip()] = value.strip()
    sizes = [int(s) for s in fields["sizes"].split()]
    kind = NRRD_TYPES.get(fields["type"])
    if kind is None:
        raise ValueError(f"{path}: NRRD type {fields['type']!r} is not handled by this reader")
    endian = "<" if fields.get("endian", "little") == "little" else ">"
    encoding = fields.get("encoding", "raw")
    if encoding in ("gzip", "gz"):
        body = gzip.decompress(body)
    elif encoding != "raw":
        raise ValueError(f"{path}: NRRD encoding {encoding!r} is not handled by this reader")
    array = np.frombuffer(body, dtype=endian + kind, count=int(np.prod(sizes))).reshape(sizes[::-1])
    directions = fields["space directions"].replace("(", " ").replace(")", " ").replace(",", " ").split()
    vectors = np.array([float(v) for v in directions]).reshape(3, 3)
    return array, tuple(float(s) for s in np.linalg.norm(vectors, axis=1))


def segmentation_task(device: torch.device, spacing_mm: float = 2.0) -> tuple:
    """(image (1, k, j, i) float32 z-scored, labels (k, j, i) int64 in 0..2) on `device`."""
    image, spacing = read_nrrd(SAMPLE)
    tumour, tumour_spacing = read_nrrd(TUMOUR)
    if tumour.shape != image.shape or not np.allclose(spacing, tumour_spacing):
        raise ValueError("the tumour mask is not on the sample volume's grid")
    shape = [max(1, round(n * s / spacing_mm)) for n, s in zip(image.shape, spacing[::-1])]
    volume = torch.from_numpy(image.astype(np.float32))[None, None].to(device)
    volume = F.interpolate(volume, size=shape, mode="trilinear", align_corners=False)[0]
    mask = torch.from_numpy(tumour.astype(np.float32))[None, None].to(device)
    mask = F.interpolate(mask, size=shape, mode="nearest")[0, 0]
    labels = (volume[0] > volume.mean()).long()
    labels[mask > 0.5] = 2
    head = volume[0][labels > 0]
    return (volume - head.mean()) / head.std(), labels


def crop_schedule(shape, patch: int, steps: int, seed: int) -> np.ndarray:
    """(steps, BATCH, 6): corner k, j, i and flip flags per sample; the same for every backend."""
    rng = np.random.default_rng(seed)
    highs = [max(1, n - patch + 1) for n in shape]
    corners = np.stack([rng.integers(0, h, size=(steps, BATCH)) for h in highs], axis=-1)
    flips = rng.integers(0, 2, size=(steps, BATCH, 3))
    return np.concatenate([corners, flips], axis=-1)


def batch_at(image: torch.Tensor, labels: torch.Tensor, plan_row: np.ndarray, patch: int) -> tuple:
    xs, ys = [], []
    for k, j, i, fk, fj, fi in plan_row.tolist():
        x = image[:, k:k + patch, j:j + patch, i:i + patch]
        y = labels[k:k + patch, j:j + patch, i:i + patch]
        dims = [d for d, f in zip((1, 2, 3), (fk, fj, fi)) if f]
        if dims:
            x, y = x.flip(dims), y.flip([d - 1 for d in dims])
        xs.append(x)
        ys.append(y)
    return torch.stack(xs), torch.stack(ys)


def pad_to_patch(image: torch.Tensor, labels: torch.Tensor, patch: int) -> tuple:
    pads = [max(0, patch - n) for n in labels.shape]
    if not any(pads):
        return image, labels
    spec = [0, pads[2], 0, pads[1], 0, pads[0]]
    return F.pad(image, spec, value=float(image.min())), F.pad(labels, spec, value=0)


def loss_curve(backend: str, initial: dict, task: tuple, schedule: np.ndarray, patch: int,
               device: torch.device) -> dict:
    image, labels = task
    model = build_network("nnMambaSeg", in_ch=1, channels=32, blocks=3, number_classes=3).to(device)
    model.load_state_dict(initial, strict=True)
    try:
        plan = make_plan(model, device, torch.bfloat16, mode="training", scan_backend=backend)
    except PlanError as e:
        return {"skipped": str(e)}
    model = apply_plan(model, plan).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    torch.manual_seed(0)
    losses, data_ms, step_ms = [], [], []
    for row in schedule:
        held = {}

        def load():
            held["batch"] = batch_at(image, labels, row, patch)
        data_ms.append(call_ms(load, device))
        x, y = held["batch"]
        step_ms.append(call_ms(lambda: held.__setitem__("loss", training_step(model, optimizer, x, y, device)), device))
        losses.append(float(held["loss"]))
    return {"plan": plan.as_dict(), "losses": losses, "data_ms_median": statistics.median(data_ms),
            "step_ms_median": statistics.median(step_ms)}


def summarise(curves: Dict[str, dict], windows: int) -> dict:
    names = [n for n, c in curves.items() if "losses" in c]
    if not names:
        return {}
    steps = len(curves[names[0]]["losses"])
    width = max(1, steps // windows)
    means = {n: [float(np.mean(curves[n]["losses"][s:s + width])) for s in range(0, steps, width)] for n in names}
    first = names[0]
    summary = {"window_steps": width, "window_means": means, "difference_vs_" + first: {}}
    last = curves[first]["losses"][-width:]
    # step-to-step spread of the first run's final window, and what it means for a window's mean
    summary["final_window_step_std"] = float(np.std(last))
    summary["final_window_mean_standard_error"] = float(np.std(last) / np.sqrt(len(last)))
    for n in names[1:]:
        summary["difference_vs_" + first][n] = [b - a for a, b in zip(means[first], means[n])]
    return summary


def loss_curve_mode(args, device: torch.device) -> dict:
    task = pad_to_patch(*segmentation_task(device), args.patch)
    schedule = crop_schedule(task[1].shape, args.patch, args.loss_curve, args.seed)
    torch.manual_seed(args.seed)
    initial = copy.deepcopy(build_network("nnMambaSeg", in_ch=1, channels=32, blocks=3, number_classes=3).state_dict())
    counts: Dict[str, int] = {}
    curves: Dict[str, dict] = {}
    for backend in args.backends:
        counts[backend] = counts.get(backend, 0) + 1
        name = backend if counts[backend] == 1 else f"{backend}#{counts[backend]}"
        print(f"loss curve: {name}, {args.loss_curve} steps of batch {BATCH} x 1 x {args.patch}^3 ...", flush=True)
        curves[name] = loss_curve(backend, initial, task, schedule, args.patch, device)
        curve = curves[name]
        if "skipped" in curve:
            print(f"  skipped: {curve['skipped']}", flush=True)
        else:
            print(f"  loss {curve['losses'][0]:.4f} -> {curve['losses'][-1]:.4f}; step {curve['step_ms_median']:.1f} ms, "
                  f"data {curve['data_ms_median']:.2f} ms "
                  f"({100 * curve['data_ms_median'] / curve['step_ms_median']:.1f} % of a step)", flush=True)
    summary = summarise(curves, args.windows)
    if summary:
        names = list(summary["window_means"])
        print(f"mean loss per window of {summary['window_steps']} steps:")
        print("  window " + " ".join(f"{n:>12s}" for n in names))
        for w in range(len(summary["window_means"][names[0]])):
            print(f"  {w:6d} " + " ".join(f"{summary['window_means'][n][w]:12.4f}" for n in names))
        for n, diffs in summary["difference_vs_" + names[0]].items():
            print(f"final-window difference {n} - {names[0]}: {diffs[-1]:+.4f} (first run's final-window step std "
                  f"{summary['final_window_step_std']:.4f}, standard error of its mean "
                  f"{summary['final_window_mean_standard_error']:.4f})")
    return {"task": f"sample MR at 2 mm, background/head/tumour, {args.patch}^3 crops, seed {args.seed}",
            "curves": curves, "summary": summary}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", type=Path, default=REPO / ".upstream" / "nnMamba.py")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=128, help="patch edge of the step benchmark")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per fast row")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--slow-steps", type=int, default=3, help="timed steps of the torch row (after 1 warm-up)")
    parser.add_argument("--skip", nargs="*", default=[], help="rows to leave out: upstream, mamba_ssm, triton, torch")
    parser.add_argument("--loss-curve", type=int, default=0, metavar="N", help="N steps per backend on the real task")
    parser.add_argument("--backends", nargs="+", default=["triton", "mamba_ssm"])
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--windows", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--channels-last", action="store_true",
                        help="our rows: the training plan's channels_last override (model and batch NDHWC)")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="our rows: torch.backends.cudnn.benchmark = True while they run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device is visible; pass --device cpu for a (slow, small) smoke run", file=sys.stderr)
        return 2
    results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if args.loss_curve:
        results.update(loss_curve_mode(args, device))
    else:
        results.update(step_mode(args, device))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
