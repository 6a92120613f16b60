"""Registers, spills and instruction counts of the selective-scan kernels on sm_90, without a GPU.

    python benchmarks/triton_sass.py                      # the default configs, fp32 and bf16
    python benchmarks/triton_sass.py --dtype bf16 bwd:32:2 fwdsave32:128:2 fwd:128:2

Compiles with Triton's bundled ptxas for an H100/H200 (sm_90) the way a launch at the benchmark
shape (batch 4, d_inner 128, d_state 16, L 32768, D, z, delta_bias, softplus) specialises the
kernels: pointers and integer arguments divisible by 16, unit strides constant. Prints per config
registers a thread, stack bytes (spills), and the SASS counts of shuffles (SHFL: scans and
reductions across threads), MUFU (exp2, log, sigmoid), RED (atomics) and LDG (loads).
All batch * d_inner programs are resident at once only when registers x 32 x warps <= 16384 here
(512 programs on 132 SMs: 4 a SM). Config: kind:BLOCK_L:warps, kind = fwd (inference),
fwdsaveS (training forward saving the state every S tokens), bwd (backward, adjoint over reversed
loads) or bwdrev (backward, adjoint by Triton's reverse=True scan).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nnmamba.ssm import _triton_scan_backward_kernels as backward  # noqa: E402
from nnmamba.ssm import _triton_scan_kernels as forward  # noqa: E402

TOOLS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
UNIT_STRIDES = {"s_an"}  # a launch passes 1 here, which Triton makes a constant
INPUT_DTYPE_POINTERS = {"u_ptr", "dt_ptr", "b_ptr", "c_ptr", "z_ptr", "dout_ptr", "du_ptr", "ddt_ptr", "dz_ptr",
                        "out_ptr"}
OPTIONS = dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, N=16, N_PAD=16)
DEFAULT_CONFIGS = ["fwd:128:2", "fwdsave64:128:2", "bwdrev:32:2", "bwdrev:64:2", "bwdrev:64:4", "bwd:32:2",
                   "bwd:64:2"]


def compile_sm90(fn, constants: dict, warps: int, dtype: str):
    signature, attrs = {}, {}
    constants = dict(constants)
    for index, name in enumerate(fn.arg_names):
        if name in constants:
            signature[name] = "constexpr"
        elif name in UNIT_STRIDES:
            signature[name] = "constexpr"
            constants[name] = 1
        else:
            pointee = dtype if name in INPUT_DTYPE_POINTERS else "fp32"
            signature[name] = "*" + pointee if name.endswith("_ptr") else "i32"
            attrs[(index,)] = [["tt.divisibility", 16]]
    source = ASTSource(fn, signature, constants, attrs)
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=warps))


def report(config: str, dtype: str, scratch: Path) -> str:
    kind, block, warps = config.split(":")
    block, warps = int(block), int(warps)
    if kind in ("bwd", "bwdrev"):
        constants = dict(OPTIONS, BLOCK_L=block, REVERSED_LOADS=kind == "bwd")
        kernel = compile_sm90(backward.selective_scan_backward_kernel, constants, warps, dtype)
    elif kind.startswith("fwd"):
        save_every = int(kind[len("fwdsave"):]) if kind.startswith("fwdsave") else block
        constants = dict(OPTIONS, BLOCK_L=block, SAVE_STATES=kind != "fwd", SAVE_L=save_every)
        kernel = compile_sm90(forward.selective_scan_kernel, constants, warps, dtype)
    else:
        raise ValueError(f"config kind must be fwd, fwdsaveS, bwd or bwdrev, got {kind!r} in {config!r}")
    cubin = scratch / "kernel.cubin"
    cubin.write_bytes(kernel.asm["cubin"])
    usage = subprocess.run([str(TOOLS / "cuobjdump"), "--dump-resource-usage", str(cubin)],
                           capture_output=True, text=True, check=True).stdout
    fields = dict(part.split(":") for line in usage.splitlines() if "REG:" in line for part in line.split())
    sass = subprocess.run([str(TOOLS / "nvdisasm"), str(cubin)], capture_output=True, text=True, check=True).stdout
    registers = int(fields["REG"])
    resident = registers * 32 * warps <= 16384
    counts = " ".join(f"{op} {sass.count(op):4d}" for op in ("SHFL", "MUFU", "RED", "LDG"))
    return (f"{config:18s} {dtype:5s} registers {registers:3d} stack {int(fields['STACK']):4d}  {counts}  "
            f"{'all resident' if resident else 'NOT all resident'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", default=DEFAULT_CONFIGS)
    parser.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), action="append")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        for dtype in args.dtype or ["fp32", "bf16"]:
            for config in args.configs:
                print(report(config, dtype, Path(scratch)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
