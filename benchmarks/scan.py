"""Selective-scan and nnMambaSeg speed on this machine's CPU (or another device), side by side.

    python benchmarks/scan.py                 # full run (reference at L=32768 takes seconds)
    python benchmarks/scan.py --quick         # L=4096 only, fewer repeats

Prints, for batch 4, d_inner 128, d_state 16 (with delta_softplus, delta_bias, D and z as the
Mamba forward passes them): the `reference` and `torch` scan times and their ratio at each L;
forward+backward times at L=4096; then nnMambaSeg(channels 32, blocks 3, classes 6) forward time
at 1x1x64^3 and the peak RSS of the fresh child process it ran in (Linux: VmHWM from
/proc/self/status; elsewhere resource.getrusage), which includes Python and torch themselves, so
the child's peak before the first forward is printed too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

from nnmamba.ssm.reference_scan import selective_scan_reference
from nnmamba.ssm.torch_scan import selective_scan_torch


def scan_inputs(length: int, device: str, requires_grad: bool = False, batch: int = 4,
                d_inner: int = 128, d_state: int = 16, seed: int = 0) -> dict:
    """Inputs with the values and memory layouts the Mamba block passes: u (the conv output) is
    (batch, d_inner, L) memory; delta, z, B and C are transposed views of (batch, L, m) memory
    (they come out of linear layers); delta ~ softplus(dt_proj + bias) starts in 0.001..0.1."""
    g = torch.Generator().manual_seed(seed)

    def token_major(m):
        return torch.randn(batch, length, m, generator=g).to(device).transpose(1, 2)

    inputs = dict(
        u=torch.randn(batch, d_inner, length, generator=g).to(device),
        delta=token_major(d_inner) * 0.5,
        A=-torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1).to(device),
        B=token_major(d_state),
        C=token_major(d_state),
        D=torch.ones(d_inner, device=device),
        z=token_major(d_inner),
        delta_bias=torch.log(torch.expm1(torch.rand(d_inner, generator=g) * 0.099 + 0.001)).to(device),
    )
    if requires_grad:
        inputs = {k: v.detach().requires_grad_(True) for k, v in inputs.items()}
    return inputs


def best_time(fn, repeats: int, device: str) -> float:
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def bench_scan(lengths, repeats: int, device: str) -> list:
    rows = []
    for length in lengths:
        inputs = scan_inputs(length, device)
        with torch.no_grad():
            want = selective_scan_reference(**inputs, delta_softplus=True)
            got = selective_scan_torch(**inputs, delta_softplus=True)
            error = ((got - want).abs().max() / want.abs().max()).item()
            t_torch = best_time(lambda: selective_scan_torch(**inputs, delta_softplus=True), repeats, device)
            ref_repeats = 1 if length > 8192 else repeats
            t_ref = best_time(lambda: selective_scan_reference(**inputs, delta_softplus=True), ref_repeats, device)
        rows.append({"L": length, "reference_s": t_ref, "torch_s": t_torch, "ratio": t_ref / t_torch,
                     "rel_error": error})
        print(f"scan L={length:6d}: reference {t_ref:7.3f} s   torch {t_torch:7.3f} s   "
              f"ratio {t_ref / t_torch:5.1f}x   max rel. difference {error:.1e}", flush=True)
    return rows


def bench_backward(length: int, repeats: int, device: str) -> dict:
    times = {}
    for name, fn in (("reference", selective_scan_reference), ("torch", selective_scan_torch)):
        inputs = scan_inputs(length, device, requires_grad=True)

        def step():
            fn(**inputs, delta_softplus=True).square().mean().backward()
        # autograd through the reference's per-token loop is slow: time it once
        times[name] = best_time(step, 1 if name == "reference" else repeats, device)
    ratio = times["reference"] / times["torch"]
    print(f"scan forward+backward L={length}: reference {times['reference']:.3f} s   "
          f"torch {times['torch']:.3f} s   ratio {ratio:.1f}x", flush=True)
    return {"L": length, **{f"{k}_s": v for k, v in times.items()}, "ratio": ratio}


_CHILD = r"""
import json, resource, sys, time, torch
from nnmamba.execution_plan import make_plan
from nnmamba.inference.plan_application import apply_plan
from nnmamba.networks import build_network

def peak_mib():
    # VmHWM: this process's own RSS high-water mark (ru_maxrss would include the parent's RSS at
    # fork time on Linux); getrusage elsewhere
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2 ** 20

size, device, backend, repeats, threads = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
if int(threads):
    torch.set_num_threads(int(threads))
torch.manual_seed(0)
model = build_network("nnMambaSeg", in_ch=1, channels=32, blocks=3, number_classes=6).eval().to(device)
plan = make_plan(model, device, torch.float32, mode="inference", scan_backend=backend)
model = apply_plan(model, plan)  # configured as a user's inference runs it
x = torch.randn(1, 1, int(size), int(size), int(size), device=device)
before = peak_mib()
times = []
with torch.no_grad():
    for _ in range(int(repeats)):
        start = time.perf_counter()
        y = model(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
print(json.dumps({"times": times, "peak_before_mib": before, "peak_mib": peak_mib(), "plan": plan.as_dict()}))
"""


def bench_network(size: int, repeats: int, device: str, backend: str, threads: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(size), device, backend, str(repeats),
                          str(threads)], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    row = {"size": size, "backend": backend, "plan": report["plan"], "first_s": report["times"][0],
           "best_s": min(report["times"]),
           "peak_rss_mib": report["peak_mib"], "peak_rss_before_forward_mib": report["peak_before_mib"]}
    print(f"nnMambaSeg(32, 3, 6) forward 1x1x{size}^3 on {device} ({backend} scan): "
          f"first {row['first_s']:.2f} s, best of {repeats} {row['best_s']:.2f} s; peak RSS of the child "
          f"process {row['peak_rss_mib']:.0f} MiB ({row['peak_rss_before_forward_mib']:.0f} MiB before the "
          f"first forward: Python, torch and the model)", flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="L=4096 only and fewer repeats")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} CPU threads")
    repeats = 2 if args.quick else 3
    results = {"network": bench_network(64, repeats, args.device, "torch", args.threads or 0),
               "scan": bench_scan([4096] if args.quick else [4096, 32768], repeats, args.device),
               "backward": bench_backward(1024 if args.quick else 4096, 1 if args.quick else 2, args.device)}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
