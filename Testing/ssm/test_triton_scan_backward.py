"""Gradients of the `triton` scan backend against autograd through the float64 reference scan.

On CPU the kernels run under Triton's interpreter in a child process (see
`triton_interpreter_checks.py`), so CPU CI catches kernel bugs; on CUDA the same checks run
in-process at realistic shapes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import triton_interpreter_checks as checks

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
EVERY_INPUT = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
# block_l: tokens per backward chunk (states saved every block_l tokens by a forward pass walking
# chunks of block_l * forward_blocks); reversed_loads: BACKWARD_REVERSED_LOADS; None: triton_scan's
BASE = dict(seed=0, batch=2, dim=3, state=4, length=37, dtype="float32", block_l=16, forward_blocks=2,
            reversed_loads=None, delta_scale=0.5, a_scale=3.0, delta_offset=0.0, softplus=True, absent=[],
            strided=False, grad=EVERY_INPUT)


def case(name, **changes):
    spec = dict(BASE, name=name, **changes)
    spec["grad"] = [k for k in spec["grad"] if k not in spec["absent"]]
    return spec


CASES = [
    case("odd length over three chunks, every option"),
    case("a single token", batch=1, dim=2, length=1),
    case("a multiple of the chunk length, forward chunks as long, no D, z, delta_bias or softplus",
         length=32, forward_blocks=1, absent=["D", "z", "delta_bias"], softplus=False),
    case("bfloat16 inputs, B and C strided like the Mamba block's", dtype="bfloat16", length=40, strided=True),
    case("float16 inputs, D without z", dtype="float16", absent=["z", "delta_bias"], length=23),
    case("huge |delta * A| (decays underflow to 0)", delta_offset=30.0, a_scale=200.0),
    # dA's a_t * h_{t-1} taken as h_t - delta_t B_t u_t (before the exclusive scan) was off by 0.71 here
    case("huge |delta * A| at the default chunk length, a_t * h_{t-1} tiny but not 0", batch=1, dim=8, state=8,
         length=150, block_l=None, delta_offset=30.0, a_scale=200.0, seed=13),
    case("d_state not a power of two, batch 3, z without D", batch=3, state=5, length=50, block_l=32,
         absent=["D"], seed=3),
    case("gradients of u and B only", grad=["u", "B"], length=20, seed=5),
    case("the default chunk lengths", batch=1, dim=2, length=300, block_l=None, seed=7),
    case("the adjoint by Triton's reverse scan, every option", reversed_loads=False, seed=9),
    case("the adjoint by reversed loads, every option", reversed_loads=True, seed=9),
]
# max |ours - reference| / max |reference| per input dtype (bf16/fp16 outputs and gradients are rounded)
TOLERANCE = {"float32": 2e-5, "bfloat16": 3e-2, "float16": 5e-3}


def require_triton() -> None:
    """Triton's wheel exists for Linux x86_64, where CI installs it: absent there is a failure."""
    if importlib.util.find_spec("triton") is not None:
        return
    if platform.system() == "Linux" and platform.machine() == "x86_64":
        pytest.fail("triton is not installed; fix: pip install -e '.[test]' (it pins triton==3.6.0 here)")
    pytest.skip(f"Triton ships no wheel for {platform.system()} {platform.machine()}")


@pytest.fixture(scope="module")
def interpreted_results():
    require_triton()
    env = dict(os.environ, TRITON_INTERPRET="1",
               PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(HERE / "triton_interpreter_checks.py")], input=json.dumps(CASES),
                          capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"the interpreter checks failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


def assert_matches_reference(result: dict, spec: dict) -> None:
    assert sorted(result["errors"]) == sorted(["out"] + spec["grad"])
    tolerance = spec.get("tolerance", TOLERANCE[spec["dtype"]])
    for name, error in result["errors"].items():
        assert result["finite"][name], f"{name}: inf or nan"
        got_dtype, want_dtype = result["dtypes"][name]
        assert got_dtype == want_dtype, f"{name}: gradient in {got_dtype}, input in {want_dtype}"
        assert error < tolerance, f"{name}: relative error {error:.2e} >= {tolerance:.0e}"


@pytest.mark.slow  # the interpreter's child process takes ~10 s for all cases together
@pytest.mark.parametrize("spec", CASES, ids=[c["name"] for c in CASES])
def test_triton_scan_output_and_gradients_match_the_float64_reference_under_the_interpreter(
        interpreted_results, spec):
    assert_matches_reference(interpreted_results[spec["name"]], spec)


@pytest.mark.slow
def test_triton_scan_under_the_interpreter_ran_every_case(interpreted_results):
    assert sorted(interpreted_results) == sorted(c["name"] for c in CASES)


def test_triton_scan_declares_it_supports_backward():
    require_triton()
    from nnmamba.ssm import triton_scan

    assert triton_scan.SUPPORTS_BACKWARD is True


GPU_CASES = [
    case("realistic shape, several chunks, float32", batch=2, dim=64, state=16, length=2049, block_l=None),
    case("realistic shape, bfloat16, strided B and C", batch=2, dim=64, state=16, length=1500, block_l=None,
         dtype="bfloat16", strided=True),
    # dA's a_t * h_{t-1} as h_t - delta_t B_t u_t lost digits here (6.8e-4 on an H200); now a product
    case("realistic shape, huge |delta * A|", batch=2, dim=32, state=16, length=700, block_l=None,
         delta_offset=30.0, a_scale=200.0),
    case("realistic shape, the adjoint by Triton's reverse scan", batch=2, dim=64, state=16, length=1000,
         block_l=None, reversed_loads=False),
    case("no options, odd length", batch=3, dim=16, state=16, length=333, block_l=64, forward_blocks=1,
         absent=["D", "z", "delta_bias"], softplus=False),
]


@pytest.mark.gpu
@pytest.mark.parametrize("spec", GPU_CASES, ids=[c["name"] for c in GPU_CASES])
def test_triton_scan_gradients_match_the_float64_reference_on_cuda(spec):
    assert_matches_reference(checks.run_case(spec, device="cuda"), spec)


@pytest.mark.gpu
def test_every_mamba_parameter_gets_the_torch_backends_gradient_on_the_triton_backend():
    from nnmamba.ssm.mamba import Mamba

    torch.manual_seed(0)
    block = Mamba(d_model=32, scan_backend="torch").cuda()
    x = torch.randn(2, 300, 32, device="cuda")
    grads = {}
    for backend in ("torch", "triton"):
        block.set_scan_backend(backend)
        block(x).square().mean().backward()
        grads[backend] = {n: p.grad for n, p in block.named_parameters()}
        block.zero_grad(set_to_none=True)
    for name, expected in grads["torch"].items():
        got = grads["triton"][name]
        assert got is not None, f"{name} got no gradient on the triton backend"
        assert torch.allclose(got, expected, rtol=1e-3, atol=1e-5 * expected.abs().max().item()), name
