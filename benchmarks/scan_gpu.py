"""GPU benchmark of the selective scan with gradients: our Triton scan vs mamba-ssm and the torch backend.

    python benchmarks/scan_gpu.py                 # self-check, then the table (fp32 and bf16)
    python benchmarks/scan_gpu.py --check         # self-check only: gradients vs the float64 reference
    python benchmarks/scan_gpu.py --sweep         # also sweep the training chunk length and warps first
    python benchmarks/scan_gpu.py --json out.json

Shape: batch 4, d_inner 128, d_state 16, L 32768, with D, z, delta_bias and softplus (as the Mamba
block calls it), contiguous inputs; u, delta, B, C, z in the row's dtype, A, D, delta_bias float32
(mamba-ssm's rule). Times are medians of CUDA-event-timed calls after warm-up: forward without
gradients, and forward + backward (torch.autograd.grad of every input). Gradient differences are
max over inputs of max |ours - theirs| / max |theirs|, or / the largest max |theirs| of the whole
call where theirs is all zeros (dA at L = 1: h_{-1} = 0). The self-check compares every gradient
with autograd through the float64 reference at small shapes and exits 1 when one is off.
--sweep times every training config in float32 and bfloat16 and keeps the fastest in bfloat16, the
dtype the trainer's scans get under autocast (both columns printed, and float32's best if it differs).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nnmamba.ssm import triton_scan  # noqa: E402
from nnmamba.ssm.reference_scan import selective_scan_reference  # noqa: E402
from nnmamba.ssm.torch_scan import selective_scan_torch  # noqa: E402
from timing import bench_ms  # noqa: E402

SHAPE = dict(batch=4, dim=128, state=16, length=32768)
INPUTS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
PARAMETERS = ("A", "D", "delta_bias")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# self-check tolerance on max |error| / max |reference| per input dtype
TOLERANCE = {torch.float32: 2e-5, torch.bfloat16: 3e-2}
DEVICE = "cuda"
CHECK_SHAPES = [(2, 16, 16, 1), (2, 16, 16, 129), (3, 32, 16, 2049), (1, 8, 5, 333)]


def scan_inputs(batch, dim, state, length, dtype, seed=0, delta_offset=0.0, a_scale=3.0):
    g = torch.Generator(device=DEVICE).manual_seed(seed)

    def rand(*shape, scale=1.0):
        return torch.randn(*shape, device=DEVICE, generator=g) * scale

    x = dict(u=rand(batch, dim, length), delta=rand(batch, dim, length, scale=0.5),
             A=-torch.rand(dim, state, device=DEVICE, generator=g) * a_scale - 0.1,
             B=rand(batch, state, length), C=rand(batch, state, length), D=rand(dim),
             z=rand(batch, dim, length), delta_bias=rand(dim, scale=0.3) + delta_offset)
    return {k: (v if k in PARAMETERS else v.to(dtype)).requires_grad_() for k, v in x.items()}


def forward_backward(scan, x, dout):
    """Output and the gradients of every input (a tuple in INPUTS order)."""
    out = scan(**x, delta_softplus=True)
    return out, torch.autograd.grad(out, [x[k] for k in INPUTS], dout)


def relative(got, want, scale_if_zero: float) -> float:
    """max |got - want| / max |want|; where want is all zeros (e.g. dA at L = 1) / scale_if_zero, the
    magnitude of the call's other results, so rounding at that scale reads as rounding, not as 1e22."""
    scale = want.double().abs().max().item()
    if scale == 0.0:
        scale = scale_if_zero
    if scale == 0.0:
        raise ValueError("scale_if_zero must be > 0 when the reference is all zeros")
    return ((got.double() - want.double()).abs().max() / scale).item()


def largest_magnitude(tensors) -> float:
    return max(t.double().abs().max().item() for t in tensors if t.numel())


def relative_all(got, want) -> list:
    """relative() of every (ours, theirs) pair, as a list in order; got and want: (out, grads)."""
    got_all, want_all = [got[0], *got[1]], [want[0], *want[1]]
    scale = largest_magnitude(want_all)
    return [relative(a, b, scale) for a, b in zip(got_all, want_all)]


def self_check() -> bool:
    ok = True
    cases = [(shape, dtype, {}, TOLERANCE[dtype]) for shape in CHECK_SHAPES for dtype in TOLERANCE]
    # delta ~ 30: dA's a_t * h_{t-1} as h_t - delta_t B_t u_t lost digits here (6.8e-4 on an H200); the
    # exclusive scan makes it a product of two accurate factors (6.5e-7 under the interpreter)
    cases.append(((2, 32, 16, 700), torch.float32, dict(delta_offset=30.0, a_scale=200.0),
                  TOLERANCE[torch.float32]))
    for (batch, dim, state, length), dtype, extreme, tolerance in cases:
        x = scan_inputs(batch, dim, state, length, dtype, seed=length, **extreme)
        dout = torch.randn(batch, dim, length, device=DEVICE, dtype=torch.float64)
        out, grads = forward_backward(triton_scan.selective_scan_triton, x, dout.to(dtype))
        x64 = {k: v.detach().double().requires_grad_() for k, v in x.items()}
        want, want_grads = forward_backward(selective_scan_reference, x64, dout)
        errors = dict(zip(("out",) + INPUTS, relative_all((out, grads), (want, want_grads))))
        finite = all(torch.isfinite(t).all() for t in (out, *grads))
        dtypes_ok = all(g.dtype == x[k].dtype for k, g in zip(INPUTS, grads))
        passed = finite and dtypes_ok and max(errors.values()) < tolerance
        ok &= passed
        label = f"{batch}x{dim}x{state}x{length} {str(dtype)[6:]}{' huge |dA|' if extreme else ''}"
        print(f"self-check {label:32s} {'PASS' if passed else 'FAIL'} max rel error "
              f"{max(errors.values()):.1e} ({max(errors, key=errors.get)}) finite={finite} dtypes={dtypes_ok}")
    return ok


# (TRAIN_BLOCK_L, BACKWARD_NUM_WARPS). ptxas for sm_90 (benchmarks/triton_sass.py, reverse=True
# adjoint), registers fp32/bf16: 16x1 127/128, 16x2 109/96, 16x4 72/72, 32x2 128/128, 32x4 96/96,
# 64x2 230/221, 64x4 128/128, none spilling; all 512 programs are resident at once in every one
SWEEP_BACKWARD = [(16, 1), (16, 2), (16, 4), (32, 2), (32, 4), (64, 2), (64, 4)]
SWEEP_FORWARD = (64, 128)  # TRAIN_FORWARD_BLOCK_L
CONFIG_NAMES = ("TRAIN_FORWARD_BLOCK_L", "TRAIN_BLOCK_L", "BACKWARD_NUM_WARPS", "BACKWARD_REVERSED_LOADS")
SWEEP_SELECTS_BY = "bf16"  # the trainer's scans run bf16 inputs under autocast


def sweep() -> None:
    """Times every training config in every DTYPES at SHAPE; sets TRAIN_FORWARD_BLOCK_L, TRAIN_BLOCK_L,
    BACKWARD_NUM_WARPS and BACKWARD_REVERSED_LOADS to the fastest forward+backward in SWEEP_SELECTS_BY."""
    calls = {}
    for name, dtype in DTYPES.items():
        x = scan_inputs(**SHAPE, dtype=dtype)
        calls[name] = (x, torch.randn_like(x["u"]))
    times = {}  # config -> {dtype name: ms}
    for forward_block, (block, warps), reversed_loads in itertools.product(SWEEP_FORWARD, SWEEP_BACKWARD,
                                                                           (True, False)):
        if forward_block % block:
            continue
        config = (forward_block, block, warps, reversed_loads)
        (triton_scan.TRAIN_FORWARD_BLOCK_L, triton_scan.TRAIN_BLOCK_L, triton_scan.BACKWARD_NUM_WARPS,
         triton_scan.BACKWARD_REVERSED_LOADS) = config
        cells = []
        for name, (x, dout) in calls.items():
            try:
                ms = bench_ms(lambda: forward_backward(triton_scan.selective_scan_triton, x, dout), 2, 5)
            except Exception as e:  # a config the compiler refuses is just not a candidate
                cells.append(f"{name} failed ({type(e).__name__}: {e})")
                continue
            times.setdefault(config, {})[name] = ms
            cells.append(f"{name} {ms:8.3f} ms")
        print(f"sweep {config_label(config)}: fwd+bwd {'  '.join(cells)}")
    best = {name: min((c for c in times if name in times[c]), key=lambda c: times[c][name], default=None)
            for name in DTYPES}
    for name, config in best.items():
        if config is not None:
            print(f"sweep best {name}: {config_label(config)} ({times[config][name]:.3f} ms)")
    chosen = best[SWEEP_SELECTS_BY]
    if chosen is None:
        raise RuntimeError(f"no training config ran in {SWEEP_SELECTS_BY}; see the failures above")
    (triton_scan.TRAIN_FORWARD_BLOCK_L, triton_scan.TRAIN_BLOCK_L, triton_scan.BACKWARD_NUM_WARPS,
     triton_scan.BACKWARD_REVERSED_LOADS) = chosen
    others = ", ".join(f"{name} {ms:.3f} ms" for name, ms in times[chosen].items())
    print(f"sweep keeps the best in {SWEEP_SELECTS_BY}: {config_label(chosen)} ({others})")


def config_label(config) -> str:
    forward_block, block, warps, reversed_loads = config
    return (f"TRAIN_FORWARD_BLOCK_L={forward_block:4d} TRAIN_BLOCK_L={block:3d} BACKWARD_NUM_WARPS={warps} "
            f"BACKWARD_REVERSED_LOADS={reversed_loads!s:5s}")


def table_row(name: str, dtype, mamba_scan) -> dict:
    x = scan_inputs(**SHAPE, dtype=dtype)
    dout = torch.randn_like(x["u"])
    row = {"dtype": name}
    with torch.no_grad():
        row["triton_fwd_ms"] = bench_ms(lambda: triton_scan.selective_scan_triton(**x, delta_softplus=True))
    row["triton_fwd_bwd_ms"] = bench_ms(lambda: forward_backward(triton_scan.selective_scan_triton, x, dout))
    ours = forward_backward(triton_scan.selective_scan_triton, x, dout)
    if mamba_scan is not None:
        with torch.no_grad():
            row["mamba_ssm_fwd_ms"] = bench_ms(lambda: mamba_scan(**x, delta_softplus=True))
        row["mamba_ssm_fwd_bwd_ms"] = bench_ms(lambda: forward_backward(mamba_scan, x, dout))
        theirs = forward_backward(mamba_scan, x, dout)
        out_diff, *grad_diffs = relative_all(ours, theirs)
        row["grad_diff_vs_mamba_ssm"] = max(grad_diffs)
        row["out_diff_vs_mamba_ssm"] = out_diff
        row["fwd_bwd_ratio_vs_mamba_ssm"] = row["triton_fwd_bwd_ms"] / row["mamba_ssm_fwd_bwd_ms"]
    row["torch_fwd_bwd_ms"] = bench_ms(lambda: forward_backward(selective_scan_torch, x, dout), 1, 3)
    torch_result = forward_backward(selective_scan_torch, x, dout)
    row["grad_diff_vs_torch"] = max(relative_all(ours, torch_result)[1:])
    return row


def print_table(rows) -> None:
    print(f"\nselective scan fwd+bwd, batch {SHAPE['batch']}, d_inner {SHAPE['dim']}, d_state {SHAPE['state']}, "
          f"L {SHAPE['length']} ({', '.join(f'{name}={getattr(triton_scan, name)}' for name in CONFIG_NAMES)})")
    print(f"{'dtype':6s} {'ours fwd':>9s} {'ours f+b':>9s} {'mamba fwd':>9s} {'mamba f+b':>9s} {'ratio f+b':>9s} "
          f"{'torch f+b':>10s} {'|dgrad| mamba':>14s} {'|dgrad| torch':>14s}")
    for r in rows:
        def cell(key, fmt):
            return format(r[key], fmt) if key in r else "n/a"
        print(f"{r['dtype']:6s} {cell('triton_fwd_ms', '9.3f')} {cell('triton_fwd_bwd_ms', '9.3f')} "
              f"{cell('mamba_ssm_fwd_ms', '9.3f'):>9s} {cell('mamba_ssm_fwd_bwd_ms', '9.3f'):>9s} "
              f"{cell('fwd_bwd_ratio_vs_mamba_ssm', '9.3f'):>9s} {cell('torch_fwd_bwd_ms', '10.1f')} "
              f"{cell('grad_diff_vs_mamba_ssm', '14.1e'):>14s} {cell('grad_diff_vs_torch', '14.1e')}")
    print("times in ms (median); ratio = ours / mamba-ssm forward+backward (target <= 1); "
          "|dgrad| = max over inputs of max |difference| / max |theirs|")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only the self-check against the float64 reference")
    parser.add_argument("--sweep", action="store_true",
                        help="sweep the training configs in fp32 and bf16 first, keep the best in bf16")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs one", file=sys.stderr)
        return 2
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    ok = self_check()
    if args.check:
        return 0 if ok else 1
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as mamba_scan
    except Exception as e:  # not built here: the table says n/a for its columns
        print(f"mamba-ssm not importable ({type(e).__name__}: {e}); its columns are n/a")
        mamba_scan = None
    if args.sweep:
        sweep()
    rows = [table_row(name, dtype, mamba_scan) for name, dtype in DTYPES.items()]
    print_table(rows)
    if args.json:
        config = {name: getattr(triton_scan, name) for name in CONFIG_NAMES}
        args.json.write_text(json.dumps(dict(device=torch.cuda.get_device_name(), config=config, rows=rows),
                                        indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
