"""Where a training step of ours spends CUDA time: torch.profiler over a few steps of the
benchmarks/train_step.py step (nnMambaSeg(1, 32, 3, 6), batch 2 x 1 x 128^3, bf16 autocast, Adam),
top ops by CUDA time, then the layout-copy and BatchNorm ops that issue 13's profile named.

    python benchmarks/train_step_profile.py [--backend triton] [--channels-last] [--cudnn-benchmark]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_step as bench  # noqa: E402

# op / kernel names of the layout copies and BatchNorm kernels in issue 13's profile
WATCHED = ("aten::copy_", "aten::clone", "CopySlices", "nchwToNhwcKernel", "nhwcToNchwKernel",
           "batch_norm_backward", "batch_norm_collect_statistics", "upsample_trilinear3d_backward")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="triton")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2, help="profiled steps (after 3 warm-up steps)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--cudnn-benchmark", action="store_true")
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device is visible", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    torch.manual_seed(0)
    model = bench.build_network("nnMambaSeg", **bench.CONFIG).to(device)
    plan = bench.make_plan(model, device, torch.bfloat16, mode="training", scan_backend=args.backend,
                           channels_last=True if args.channels_last else None)
    model = bench.apply_plan(model, plan).train()
    print(plan.describe())
    g = torch.Generator(device=device).manual_seed(1)
    x = bench.to_plan_layout(torch.randn(bench.BATCH, 1, *(args.size,) * 3, device=device, generator=g), plan)
    target = torch.randint(0, bench.CONFIG["number_classes"], (bench.BATCH, *(args.size,) * 3), device=device,
                           generator=g)
    optimizer = torch.optim.Adam(model.parameters(), lr=bench.LEARNING_RATE)
    for _ in range(3):
        bench.training_step(model, optimizer, x, target, device)
    torch.cuda.synchronize()
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(args.steps):
            bench.training_step(model, optimizer, x, target, device)
        torch.cuda.synchronize()
    events = prof.key_averages()
    print(events.table(sort_by="cuda_time_total", row_limit=args.rows))
    total = sum(e.self_device_time_total for e in events) / 1000
    print(f"CUDA total (self, all ops): {total:.1f} ms over {args.steps} steps")
    print("watched ops and kernels (an op's CUDA time includes its kernels', so do not add them up):")
    for e in sorted(events, key=lambda e: -e.device_time_total):
        if any(name in e.key for name in WATCHED) and e.device_time_total > 0:
            print(f"  {e.key[:90]:90s} {e.device_time_total / 1000:8.1f} ms  ({e.count} calls)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
