"""The channel-major Mamba path (for backends that declare layout "channels") computes what the
token-major path computes, with the same parameters, and hands the scan unit-stride inputs."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nnmamba.ssm import backends
from nnmamba.ssm.mamba import Mamba
from nnmamba.ssm.torch_scan import selective_scan_torch

from module_gradients import output_and_gradients

CHANNELS_TEST_BACKEND = "torch_channels_test"


@pytest.fixture
def channel_backend():
    """The torch scan registered under a test-only name that declares layout "channels"; records the
    last-dimension strides of what it was given."""
    seen = []

    def recording_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
        seen.append({"u": u.stride(), "delta": delta.stride(), "z": z.stride(), "B": B.stride(-1),
                     "C": C.stride(-1), "u_contiguous": u.is_contiguous(), "delta_contiguous": delta.is_contiguous()})
        return selective_scan_torch(u, delta, A, B, C, D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)

    backends.register_backend(CHANNELS_TEST_BACKEND, recording_scan, lambda device: True, speed_rank=10_000,
                              layout=backends.CHANNELS)
    yield seen
    backends._REGISTRY.pop(CHANNELS_TEST_BACKEND)


def _pair(bias: bool):
    torch.manual_seed(0)
    tokens = Mamba(d_model=16, d_state=8, bias=bias, scan_backend="torch").double()
    channels = copy.deepcopy(tokens)
    channels.set_scan_backend(CHANNELS_TEST_BACKEND)
    return tokens, channels


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("length", [1, 5, 37])
def test_channel_major_path_gives_the_token_major_output_and_gradients_in_float64(channel_backend, bias, length):
    tokens, channels = _pair(bias)
    x = torch.randn(3, length, 16, dtype=torch.float64)
    want_out, want_dx, want_dp = output_and_gradients(tokens, x)
    got_out, got_dx, got_dp = output_and_gradients(channels, x)
    assert channels.channel_major(x) and not tokens.channel_major(x)
    assert channel_backend, "the channel-major path did not reach the channel backend"
    assert got_out.shape == want_out.shape
    assert torch.allclose(got_out, want_out, rtol=0, atol=1e-12)
    assert torch.allclose(got_dx, want_dx, rtol=0, atol=1e-12)
    assert want_dp.keys() == got_dp.keys()
    for name in want_dp:
        assert torch.allclose(got_dp[name], want_dp[name], rtol=0, atol=1e-11), name


def test_channel_major_path_hands_the_scan_unit_stride_inputs(channel_backend):
    _, channels = _pair(False)
    channels(torch.randn(2, 9, 16, dtype=torch.float64))
    seen = channel_backend[-1]
    assert seen["u_contiguous"] and seen["delta_contiguous"]
    assert seen["z"][-1] == 1 and seen["B"] == 1 and seen["C"] == 1


def test_channel_major_block_keeps_the_state_dict_and_loads_the_token_major_one_strictly(channel_backend):
    tokens, _ = _pair(False)
    fresh = Mamba(d_model=16, d_state=8, scan_backend=CHANNELS_TEST_BACKEND).double()
    fresh.load_state_dict(tokens.state_dict(), strict=True)
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(fresh(x), tokens(x), rtol=0, atol=1e-12)


def test_cuda_kernel_backends_declare_the_channel_layout_and_cpu_backends_the_token_layout():
    declared = {d.name: d.layout for d in backends.declarations("cpu")}
    assert declared["torch"] == backends.TOKENS and declared["reference"] == backends.TOKENS
    for name in ("triton", "mamba_ssm"):
        if name in declared:
            assert declared[name] == backends.CHANNELS


def test_registering_a_backend_with_an_unknown_layout_is_refused():
    with pytest.raises(ValueError, match="layout must be one of tokens, channels, got 'rows'"):
        backends.register_backend("bad_layout_test", selective_scan_torch, lambda device: True, layout="rows")


@pytest.mark.slow
def test_channel_major_block_on_the_triton_kernels_under_the_interpreter_matches_the_torch_block():
    """The triton kernels read the strided views the channel-major path hands them (z and B, C are
    slices of larger tensors) in forward and backward."""
    if importlib.util.find_spec("triton") is None:
        if platform.system() == "Linux" and platform.machine() == "x86_64":
            pytest.fail("triton is not installed; fix: pip install -e '.[test]' (it pins triton==3.6.0 here)")
        pytest.skip(f"Triton ships no wheel for {platform.system()} {platform.machine()}")
    here = Path(__file__).resolve().parent
    env = dict(os.environ, TRITON_INTERPRET="1",
               PYTHONPATH=os.pathsep.join([str(here.parent.parent), str(here), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(here / "mamba_channel_major_interpreter_check.py")],
                          capture_output=True, text=True, env=env, timeout=300)
    if done.returncode != 0:
        pytest.fail(f"the interpreter check failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    errors = json.loads(done.stdout)
    assert {"out", "x", "x_proj.weight", "A_log", "in_proj.weight", "out_proj.weight"} <= set(errors)
    assert max(errors.values()) < 1e-4, errors


def inner_fn_in_torch(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight,
                      out_proj_bias, A, B=None, C=None, D=None, delta_bias=None, delta_softplus=True):
    """mamba-ssm's `mamba_inner_fn` maths in plain torch (xz: (b, 2E, L) -> (b, L, d_model)); refuses an xz
    that is not unit-stride in L, which the channel-layout block must hand it."""
    if xz.stride(-1) != 1:
        raise ValueError(f"xz must be unit-stride in L, got strides {xz.stride()}")
    length, width = xz.shape[-1], conv1d_weight.shape[-1]
    x, z = xz.chunk(2, dim=1)
    x = torch.nn.functional.conv1d(x, conv1d_weight, conv1d_bias, padding=width - 1, groups=x.shape[1])
    x = torch.nn.functional.silu(x[..., :length])
    x_dbl = torch.matmul(x_proj_weight, x)
    rank, state = delta_proj_weight.shape[1], A.shape[1]
    dt, B, C = torch.split(x_dbl, [rank, state, state], dim=1)
    D, delta_bias = D.to(x.dtype), delta_bias.to(x.dtype)
    y = selective_scan_torch(x, torch.matmul(delta_proj_weight, dt), A, B, C, D, z=z, delta_bias=delta_bias,
                             delta_softplus=delta_softplus)
    return torch.nn.functional.linear(y.transpose(1, 2), out_proj_weight, out_proj_bias)


def test_a_fused_inner_function_of_a_channel_layout_backend_gets_unit_stride_xz_and_the_same_result(channel_backend):
    name = "torch_fused_channels_test"
    backends.register_backend(name, selective_scan_torch, lambda device: True, speed_rank=10_000,
                              layout=backends.CHANNELS,
                              fused_inner=backends.FusedForm("inner_fn_in_torch", lambda: inner_fn_in_torch, str))
    try:
        tokens, fused = _pair(False)
        fused.set_scan_backend(name)
        assert fused.decision("cpu", torch.float64, "training")[1], "the fused inner function is not planned"
        x = torch.randn(2, 13, 16, dtype=torch.float64)
        want, got = output_and_gradients(tokens, x), output_and_gradients(fused, x)
    finally:
        backends._REGISTRY.pop(name)
    # the block hands a fused function D and delta_bias in float32 (mamba-ssm's kernels take them so)
    assert torch.allclose(got[0], want[0], rtol=1e-6, atol=1e-9)
    assert torch.allclose(got[1], want[1], rtol=1e-6, atol=1e-9)
    for key in want[2]:
        assert torch.allclose(got[2][key], want[2][key], rtol=1e-5, atol=1e-8), key
