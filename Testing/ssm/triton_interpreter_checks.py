"""Runs the `triton` scan's kernels on CPU tensors under Triton's interpreter and compares the output
and every gradient with autograd through the float64 reference scan.

Triton picks the interpreter when a kernel is decorated, i.e. when our kernel modules are first
imported, from TRITON_INTERPRET; a pytest process has usually imported them already, so
`test_triton_scan_backward.py` runs this file in a child process:

    TRITON_INTERPRET=1 python Testing/ssm/triton_interpreter_checks.py < cases.json > results.json

stdin: a JSON list of cases (keys of `run_case`); stdout: one JSON object, case name ->
{"errors": {tensor: max |ours - reference| / max |reference|}, "finite": {tensor: bool},
"dtypes": {tensor: [ours, expected]}}, where tensor is "out" or an input whose gradient it is.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# the reference's parameters (A, D, delta_bias) stay float32 in every case, as Mamba passes them
PARAMETERS = ("A", "D", "delta_bias")


def work_around_index_of_numpy_2_4() -> None:
    """Triton 3.6's interpreter turns a scalar kernel argument into an int with int() of a 1-element
    array, which numpy >= 2.4 refuses (triton-lang/triton#9171: `for ... in tl.range(0, seqlen)`
    fails with "only 0-dimensional arrays can be converted to Python scalars"). Same patch as the
    issue proposes, applied to this interpreter process only."""
    if tuple(int(p) for p in np.__version__.split(".")[:2]) < (2, 4):
        return
    from triton.runtime import interpreter

    original = interpreter._patch_lang_tensor

    def patch_lang_tensor(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    interpreter._patch_lang_tensor = patch_lang_tensor


def make_inputs(case: dict, device: str = "cpu") -> dict:
    g = torch.Generator().manual_seed(case["seed"])
    batch, dim, state, length = case["batch"], case["dim"], case["state"], case["length"]
    dtype = DTYPES[case["dtype"]]

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    x = dict(u=rnd(batch, dim, length), delta=rnd(batch, dim, length, scale=case["delta_scale"]),
             A=-torch.rand(dim, state, generator=g) * case["a_scale"] - 0.1,
             B=rnd(batch, state, length), C=rnd(batch, state, length), D=rnd(dim),
             z=rnd(batch, dim, length), delta_bias=rnd(dim, scale=0.3) + case["delta_offset"])
    x = {k: v if k in PARAMETERS else v.to(dtype) for k, v in x.items() if k not in case["absent"]}
    if case["strided"]:
        # B and C as the Mamba block passes them: (batch, L, N) memory seen as (batch, N, L)
        x["B"] = x["B"].transpose(1, 2).contiguous().transpose(1, 2)
        x["C"] = x["C"].transpose(1, 2).contiguous().transpose(1, 2)
    return {k: v.to(device) for k, v in x.items()}


def run_case(case: dict, device: str = "cpu") -> dict:
    """One case on `device` ("cpu" only under the interpreter), with the case's training chunk length
    (block_l) and forward chunk length (block_l * forward_blocks) and adjoint method (reversed_loads);
    None keeps triton_scan's."""
    from nnmamba.ssm import triton_scan

    names = ("TRAIN_BLOCK_L", "TRAIN_FORWARD_BLOCK_L", "BACKWARD_REVERSED_LOADS")
    defaults = {name: getattr(triton_scan, name) for name in names}
    if case["block_l"] is not None:
        triton_scan.TRAIN_BLOCK_L = case["block_l"]
        triton_scan.TRAIN_FORWARD_BLOCK_L = case["block_l"] * case["forward_blocks"]
    if case["reversed_loads"] is not None:
        triton_scan.BACKWARD_REVERSED_LOADS = case["reversed_loads"]
    try:
        return _compare(case, device)
    finally:
        for name, value in defaults.items():
            setattr(triton_scan, name, value)


def _compare(case: dict, device: str) -> dict:
    from nnmamba.ssm import triton_scan
    from nnmamba.ssm.reference_scan import selective_scan_reference

    x = make_inputs(case, device)
    ours = {k: v.clone().requires_grad_(k in case["grad"]) for k, v in x.items()}
    ref = {k: v.double().requires_grad_(k in case["grad"]) for k, v in x.items()}
    softplus = case["softplus"]
    out = triton_scan.selective_scan_triton(**ours, delta_softplus=softplus)
    expected = selective_scan_reference(**ref, delta_softplus=softplus)
    dout = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(device)
    out.backward(dout.to(out.dtype))
    expected.backward(dout)
    pairs = {"out": (out, expected, x["u"].dtype)}
    pairs.update({k: (ours[k].grad, ref[k].grad, x[k].dtype) for k in case["grad"]})
    result = {"errors": {}, "finite": {}, "dtypes": {}}
    for name, (got, want, dtype) in pairs.items():
        if got is None:
            result["errors"][name] = float("inf")
            result["finite"][name] = False
            result["dtypes"][name] = ["None", str(dtype)]
            continue
        scale = want.abs().max().clamp_min(1e-30)
        result["errors"][name] = ((got.double() - want).abs().max() / scale).item()
        result["finite"][name] = bool(torch.isfinite(got).all())
        result["dtypes"][name] = [str(got.dtype), str(dtype)]
    return result


def main() -> None:
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise SystemExit("run with TRITON_INTERPRET=1: these checks are for Triton's CPU interpreter")
    work_around_index_of_numpy_2_4()
    torch.set_num_threads(1)
    from nnmamba.ssm import triton_scan

    if not triton_scan.interpreting():
        raise SystemExit("the triton scan kernels were not decorated for the interpreter")
    cases = json.load(sys.stdin)
    json.dump({case["name"]: run_case(case) for case in cases}, sys.stdout)


if __name__ == "__main__":
    main()
