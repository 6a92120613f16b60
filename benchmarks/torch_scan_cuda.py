"""The `torch` scan backend on CUDA: its CPU policy against its GPU (levels) policy, one run.

    python benchmarks/torch_scan_cuda.py                  # (a) + (b) on cuda:0, about a minute
    python benchmarks/torch_scan_cuda.py --profile        # + the top CUDA kernels of one step
    python benchmarks/torch_scan_cuda.py --count-ops      # op counts only, no GPU (~2 min on a CPU)

(a) the bare scan forward+backward at batch 8, d_inner 128, d_state 16, L 32768 (a layer-1 MICCSS
    call of nnMambaSeg at 2x1x128^3), with the CPU policy and with the levels policy at chunk
    lengths 4, 8, 16, 32: median ms between CUDA events, max relative difference to the CPU
    policy's output and gradients, peak memory;
(b) a full training step of nnMambaSeg(1, 32, 3, 6) at 2x1x128^3, bf16 autocast, Adam, backend
    `torch`: median ms of 3 steps after 2 warm-up steps (the CPU policy's step only with
    --step-cpu-policy: it takes ~18 s a step).
--count-ops counts the aten ops (one per kernel launch, roughly) of (a)'s forward+backward for both
policies on meta (data-less) tensors, so it needs no GPU (the CPU policy's 2.3 million ops take
~2 min to dispatch). --smoke runs (a) and (b) at tiny sizes on the CPU (checks this script, times
nothing useful). Needs no SimpleITK.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nnmamba.networks import build_network  # noqa: E402
from nnmamba.ssm import torch_scan  # noqa: E402
from nnmamba.ssm.hierarchical_scan import HierarchicalScan  # noqa: E402
from nnmamba.ssm.torch_scan import CACHE_POLICY, LEVELS_POLICY, ScanPolicy, selective_scan_torch  # noqa: E402
from timing import median_ms  # noqa: E402

SCAN_SHAPE = dict(batch=8, d_inner=128, d_state=16, length=32768)
STEP_SHAPE = dict(batch=2, size=128)
CHUNKS = (4, 8, 16, 32, 64)


def scan_inputs(device, batch, d_inner, d_state, length, seed=0):
    """Leaves with the Mamba block's value ranges and layouts: u (b, d, L) memory; delta, z, B, C
    transposed views of (b, L, m) memory; delta = softplus(dt + bias) starts in 0.001..0.1."""
    g = torch.Generator().manual_seed(seed)

    def token_major(m, scale=1.0):
        return (torch.randn(batch, length, m, generator=g) * scale).to(device).transpose(1, 2)

    def dense(*shape):
        return torch.randn(*shape, generator=g).to(device)

    inputs = dict(
        u=dense(batch, d_inner, length), delta=token_major(d_inner, 0.5),
        A=-torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1).to(device),
        B=token_major(d_state), C=token_major(d_state), D=torch.ones(d_inner, device=device),
        z=token_major(d_inner),
        delta_bias=torch.log(torch.expm1(torch.rand(d_inner, generator=g) * 0.099 + 0.001)).to(device))
    return {k: v.detach().requires_grad_(True) for k, v in inputs.items()}


def scan_step(inputs, policy, weights):
    """One forward+backward; returns y and the gradients (detached)."""
    for v in inputs.values():
        v.grad = None
    y = selective_scan_torch(**inputs, delta_softplus=True, policy=policy)
    y.backward(weights)
    return [y.detach()] + [v.grad for v in inputs.values()]


class _OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        # views launch no kernel; everything else on a GPU is (about) one launch
        self.ops["(views)" if func.is_view else func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def count_ops(policy) -> Counter:
    """Ops of one forward+backward of the scan core (the autograd function the backend applies
    after its prologue of a few ops) on meta tensors: exact counts, no arithmetic, no data."""
    batch, d_inner, d_state, length = (SCAN_SHAPE[k] for k in ("batch", "d_inner", "d_state", "length"))

    def leaf(*shape):
        return torch.empty(*shape, device="meta", requires_grad=True)

    u, delta, dy = leaf(batch, length, d_inner), leaf(batch, length, d_inner), leaf(batch, length, d_inner)
    A, B, C = leaf(d_inner, d_state), leaf(batch, length, d_state), leaf(batch, length, d_state)
    with _OpCounter() as counter:
        if policy.levels:
            y = HierarchicalScan.apply(u, delta, A, B, C, policy.chunk, policy.group_elements)
        else:
            y = torch_scan._ChunkedScan.apply(u, delta, A, B, C)
        y.backward(dy.detach())
    return counter.ops


def policies():
    return [("cpu policy", CACHE_POLICY)] + [
        (f"levels chunk {c}", ScanPolicy(levels=True, chunk=c, group_elements=LEVELS_POLICY.group_elements))
        for c in CHUNKS]


def count_section():
    print(f"aten ops of one scan forward+backward at {SCAN_SHAPE} (meta tensors):")
    for name, policy in policies():
        ops = count_ops(policy)
        views = ops.pop("(views)", 0)
        top = ", ".join(f"{k} {v}" for k, v in ops.most_common(4))
        print(f"  {name:16s} {sum(ops.values()):8d} computing ops + {views:8d} views   ({top})", flush=True)


def reset_peak(device):
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device, since=0):
    """Peak memory allocated since the last reset, beyond `since` bytes (nan off CUDA)."""
    if torch.device(device).type != "cuda":
        return float("nan")
    return (torch.cuda.max_memory_allocated(device) - since) / 2 ** 30


def allocated(device):
    return torch.cuda.memory_allocated(device) if torch.device(device).type == "cuda" else 0


def relative(got, want):
    return ((got.double() - want.double()).abs().max() / want.double().abs().max().clamp_min(1e-30)).item()


def scan_section(device):
    inputs = scan_inputs(device, **SCAN_SHAPE)
    weights = torch.randn(SCAN_SHAPE["batch"], SCAN_SHAPE["d_inner"], SCAN_SHAPE["length"],
                          generator=torch.Generator().manual_seed(1)).to(device)
    print(f"(a) scan forward+backward at {SCAN_SHAPE}, float32 (peak: memory beyond the inputs):")
    baseline = None
    for name, policy in policies():
        reset_peak(device)
        before = allocated(device)
        slow = not policy.levels
        ms = median_ms(lambda: scan_step(inputs, policy, weights), 1, 2 if slow else 5, device)
        peak = peak_gib(device, before)
        out = scan_step(inputs, policy, weights)
        if baseline is None:
            baseline, diff = out, ""
        else:
            diff = "   max rel. diff to cpu policy: y %.1e, grads %.1e" % (
                relative(out[0], baseline[0]), max(relative(a, b) for a, b in zip(out[1:], baseline[1:])))
        print(f"  {name:16s} {ms:10.1f} ms   peak {peak:5.2f} GiB{diff}", flush=True)


def training_step_fn(device, batch=2, size=128):
    torch.manual_seed(0)
    model = build_network("nnMambaSeg", scan_backend="torch", in_ch=1, channels=32, blocks=3,
                          number_classes=6).to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    image = torch.randn(batch, 1, size, size, size, device=device)
    labels = torch.randint(0, 6, (batch, size, size, size), device=device)

    def step():
        optimiser.zero_grad(set_to_none=True)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(image), labels)
        loss.backward()
        optimiser.step()
    return step, model


def step_section(device, cpu_policy_too):
    print(f"(b) nnMambaSeg(1, 32, 3, 6) training step, {STEP_SHAPE['batch']}x1x{STEP_SHAPE['size']}^3, "
          "bf16 autocast, Adam, backend torch:")
    runs = [("levels policy", LEVELS_POLICY)] + ([("cpu policy", CACHE_POLICY)] if cpu_policy_too else [])
    original = torch_scan.policy_for
    try:
        for name, policy in runs:
            torch_scan.policy_for = lambda _device, p=policy: p   # what the backend asks for
            step, model = training_step_fn(device, **STEP_SHAPE)
            reset_peak(device)
            ms = median_ms(step, 2, 3, device)
            mamba_grads = [p.grad for n, p in model.named_parameters() if ".mamba." in n]
            trained = all(g is not None and torch.isfinite(g).all() for g in mamba_grads)
            peak = peak_gib(device)
            print(f"  {name:16s} {ms:10.1f} ms / step   peak {peak:5.1f} GiB   "
                  f"{len(mamba_grads)} Mamba parameters with finite gradients: {trained}", flush=True)
    finally:
        torch_scan.policy_for = original
    print("  (issue 13, same H200: upstream nnMamba + compiled mamba-ssm 94 ms / step; target <= 10x = 940 ms)")


def profile_section(device):
    from torch.profiler import ProfilerActivity, profile

    step, _ = training_step_fn(device, **STEP_SHAPE)
    for _ in range(2):
        step()
    torch.cuda.synchronize(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize(device)
    averages = prof.key_averages()
    launches = sum(e.count for e in averages if "LaunchKernel" in e.key)
    print(f"profile of one training step (backend torch, levels policy): {launches} kernel launches")
    print(averages.table(sort_by="self_device_time_total", row_limit=25))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--count-ops", action="store_true", help="only count the ops of (a) on meta tensors (no GPU)")
    parser.add_argument("--profile", action="store_true", help="also profile one training step")
    parser.add_argument("--step-cpu-policy", action="store_true",
                        help="also time the training step with the CPU policy (~18 s a step)")
    parser.add_argument("--skip-scan", action="store_true", help="only the training step")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks the script")
    args = parser.parse_args(argv)
    if args.count_ops:
        count_section()
        return 0
    if args.smoke:
        SCAN_SHAPE.update(batch=2, d_inner=8, d_state=4, length=300)
        args.device, STEP_SHAPE["size"] = "cpu", 32
    elif not torch.cuda.is_available():
        print("no CUDA device: nothing to time (--count-ops and --smoke run without one)")
        return 1
    else:
        print(f"device: {torch.cuda.get_device_name(args.device)}, torch {torch.__version__}", flush=True)
    t0 = time.perf_counter()
    if not args.skip_scan:
        scan_section(args.device)
    step_section(args.device, args.step_cpu_policy)
    if args.profile:
        profile_section(args.device)
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
