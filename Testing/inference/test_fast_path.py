"""The fast inference copy: BatchNorm folding (any device), fused MICCSS and CUDA graphs (CUDA)."""

from __future__ import annotations

import copy
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from nnmamba.inference.fast_path import FusedMiccss, fold_batchnorm, prepare_for_inference
from nnmamba.networks import build_network
from nnmamba.networks.miccss import MambaLayer

HAS_TRITON = importlib.util.find_spec("triton") is not None


def _randomise(model: nn.Module, seed: int) -> nn.Module:
    """Random BatchNorm statistics and Mamba skip/bias terms, so that every folded term matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            if isinstance(m, MambaLayer):
                m.mamba.D.copy_(torch.rand(m.mamba.d_inner, generator=g) * 2 - 1)
    return model.eval()


def _relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got.double() - expected.double()).abs().max() / expected.double().abs().max()).item()


def test_folding_batchnorm_keeps_the_network_output_and_leaves_no_batchnorm():
    torch.manual_seed(0)
    net = _randomise(build_network("nnMambaSeg", in_ch=1, channels=8, blocks=2, number_classes=3,
                                   scan_backend="torch"), seed=1).double()
    x = torch.randn(1, 1, 32, 32, 32, dtype=torch.float64)
    folded = fold_batchnorm(copy.deepcopy(net))
    assert not any(isinstance(m, nn.BatchNorm3d) for m in folded.modules())
    with torch.no_grad():
        assert _relative_error(folded(x), net(x)) < 1e-10


def test_prepare_for_inference_refuses_integer_dtypes():
    net = build_network("nnMambaSeg", in_ch=1, channels=8, blocks=2, number_classes=3)
    with pytest.raises(ValueError, match="dtype must be one of"):
        prepare_for_inference(net, torch.int8)


def test_prepare_for_inference_leaves_the_original_network_untouched():
    net = build_network("nnMambaLandmark", in_ch=1, channels=8, blocks=2, number_landmarks=2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    prepare_for_inference(net, torch.float32)
    after = net.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_fused_miccss_refuses_a_layer_whose_batchnorm_is_not_folded():
    with pytest.raises(ValueError, match="fold_batchnorm"):
        FusedMiccss(MambaLayer(16).eval(), torch.float32)


# The MICCSS scan's loop bound is a runtime scalar: Triton 3.6's interpreter needs the same numpy >= 2.4
# fix as the selective scan's interpreter checks (see work_around_index_of_numpy_2_4 there).
INTERPRETER_CHECK = """
import copy, sys, torch
sys.path[:0] = sys.argv[1:3]
from triton_interpreter_checks import work_around_index_of_numpy_2_4
work_around_index_of_numpy_2_4()
from nnmamba.inference.fast_path import FusedMiccss, fold_batchnorm
from nnmamba.networks.miccss import MambaLayer
from nnmamba.ssm import triton_scan
from test_fast_path import _randomise, _relative_error
triton_scan.MICCSS_BLOCK_L = 16  # several chunks per scan, in both directions
torch.manual_seed(0)
layer = _randomise(MambaLayer(16, scan_backend="torch"), seed=2)
x = torch.randn(2, 16, 5, 4, 3)  # 60 tokens: three full chunks and a partial one
with torch.no_grad():
    expected = copy.deepcopy(layer).double()(x.double())
    got = FusedMiccss(fold_batchnorm(copy.deepcopy(layer)), torch.float32)(x)
up = torch.randn(1, 3, 3, 4, 5)
expected_up = torch.nn.functional.interpolate(up, scale_factor=2, mode="trilinear", align_corners=False)
up_errors = [(triton_scan.upsample2x_trilinear(x_up) - expected_up).abs().max().item()
             for x_up in (up, up.contiguous(memory_format=torch.channels_last_3d))]  # both kernel layouts
print(_relative_error(got, expected), *up_errors)
"""


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TRITON, reason="needs Triton (its interpreter runs the kernels on CPU)")
def test_fused_miccss_and_upsampling_match_torch_under_the_triton_interpreter():
    # a child process: TRITON_INTERPRET is read when the kernels are defined
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]))
    here = Path(__file__).resolve().parent
    done = subprocess.run([sys.executable, "-c", INTERPRETER_CHECK, str(here), str(here.parent / "ssm")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    miccss_error, *upsample_errors = map(float, done.stdout.split()[-3:])
    assert miccss_error < 1e-5 and max(upsample_errors) < 1e-5


@pytest.mark.gpu
@pytest.mark.parametrize("name,kwargs", [
    ("nnMambaSeg", dict(in_ch=1, channels=16, blocks=3, number_classes=4)),
    ("nnMambaLandmark", dict(in_ch=2, channels=8, blocks=2, number_landmarks=3)),
])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-3), (torch.bfloat16, 5e-2)])
def test_fast_copy_matches_the_eager_network_in_float64(name, kwargs, dtype, tol):
    torch.manual_seed(0)
    net = _randomise(build_network(name, scan_backend="torch", **kwargs), seed=3).cuda()
    x = torch.randn(2, kwargs["in_ch"], 64, 48, 32, device="cuda")
    with torch.no_grad():
        expected = copy.deepcopy(net).double()(x.double())
        got = prepare_for_inference(net, dtype)(x)
    assert got.dtype == dtype and torch.isfinite(got).all()
    assert _relative_error(got, expected) < tol


@pytest.mark.gpu
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_upsampling_equals_torch_trilinear(dtype, channels_last):
    from nnmamba.ssm.triton_scan import upsample2x_trilinear

    x = torch.randn(2, 5, 7, 6, 9, device="cuda").to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    expected = nn.functional.interpolate(x.float(), scale_factor=2, mode="trilinear", align_corners=False)
    got = upsample2x_trilinear(x)
    assert got.dtype == dtype
    assert torch.allclose(got.float(), expected, rtol=1e-2 if dtype == torch.bfloat16 else 1e-6, atol=1e-5)


@pytest.mark.gpu
def test_classification_network_keeps_its_single_direction_stem_in_float32():
    torch.manual_seed(0)
    net = _randomise(build_network("nnMambaEncoder", in_ch=1, channels=8, blocks=2, number_classes=3,
                                   scan_backend="torch"), seed=4).cuda()
    x = torch.randn(2, 1, 32, 32, 32, device="cuda")
    with torch.no_grad():
        expected = copy.deepcopy(net).double()(x.double())
        got = prepare_for_inference(net, torch.bfloat16)(x)
    assert _relative_error(got, expected) < 5e-2


@pytest.mark.gpu
def test_graph_replay_gives_the_eager_result_for_every_new_input():
    from nnmamba.inference.cuda_graph import GraphedNetwork

    torch.manual_seed(0)
    net = _randomise(build_network("nnMambaSeg", in_ch=1, channels=8, blocks=2, number_classes=3), seed=5)
    fast = prepare_for_inference(net.cuda(), torch.float32)
    graphed = GraphedNetwork(fast)
    for seed in range(3):
        x = torch.randn(1, 1, 32, 32, 32, device="cuda", generator=torch.Generator("cuda").manual_seed(seed))
        with torch.no_grad():
            assert torch.allclose(graphed(x), fast(x), rtol=1e-5, atol=1e-5)


# ---- MICCSS permutations in float64 on the CPU ----------------------------------------------------

def miccss_scans_reference(xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, dt_proj_bias, A, D):
    """What `triton_scan.miccss_scans` computes, spelled out with the engine's sequential scan (any
    device, any float dtype): stream 2*v + r = Mamba's inner function on channel order v, token order
    r (r = 1: flipped, then flipped back). Same signature and shapes as the kernel."""
    import torch.nn.functional as F

    from nnmamba.ssm.mamba import causal_depthwise_conv
    from nnmamba.ssm.reference_scan import selective_scan_reference

    dtype = xz.dtype
    dim = xz.shape[2] // 2
    rank, state = dt_proj_weight.shape[1], A.shape[1]
    streams = []
    for v in range(2):
        for r in range(2):
            x, z = xz[:, v, :dim], xz[:, v, dim:]                                   # (B, E, L)
            if r:
                x, z = x.flip(-1), z.flip(-1)
            u = F.silu(causal_depthwise_conv(x.transpose(1, 2), conv_weight[:, None, :].to(dtype),
                                             conv_bias.to(dtype))).transpose(1, 2)
            dt, B, C = torch.split(x_proj_weight.to(dtype) @ u, [rank, state, state], dim=1)
            y = selective_scan_reference(u, dt_proj_weight.to(dtype) @ dt, A.to(dtype), B, C, D.to(dtype), z=z,
                                         delta_bias=dt_proj_bias.to(dtype), delta_softplus=True)
            streams.append(y.flip(-1) if r else y)
    return torch.stack(streams, dim=1)


def test_fused_miccss_permutations_equal_the_miccss_layer_in_float64(monkeypatch):
    # The kernel is replaced by its spelled-out reference (checked against it on the GPU below), so
    # what is under test here is FusedMiccss's own algebra: folded BatchNorms, in_proj for the reversed
    # channel order, reverse scans for the token flips, out_proj rows reversed and averaged.
    from nnmamba.ssm import triton_scan

    monkeypatch.setattr(triton_scan, "miccss_scans", miccss_scans_reference)
    torch.manual_seed(0)
    layer = _randomise(MambaLayer(16, scan_backend="torch"), seed=4).double()
    with torch.no_grad():
        layer.mamba.in_proj.bias = nn.Parameter(torch.randn(layer.mamba.in_proj.out_features).double())
        layer.mamba.out_proj.bias = nn.Parameter(torch.randn(16).double())
    x = torch.randn(2, 16, 6, 5, 4, dtype=torch.float64)
    with torch.no_grad():
        expected = layer(x)
        got = FusedMiccss(fold_batchnorm(copy.deepcopy(layer)), torch.float64)(x)
    # the scan's own parameters are kept float32 by design (as mamba-ssm keeps A_log, D, dt bias)
    assert _relative_error(got, expected) < 1e-6


@pytest.mark.gpu
@pytest.mark.parametrize("length", [64, 1000])
def test_the_triton_miccss_scans_equal_their_reference(length):
    from nnmamba.ssm.triton_scan import miccss_scans

    g = torch.Generator(device="cuda").manual_seed(length)
    dim, state, rank, width = 32, 16, 2, 4

    def rand(*shape, scale=1.0):
        return torch.randn(*shape, device="cuda", generator=g) * scale

    args = (rand(2, 2, 2 * dim, length), rand(dim, width, scale=0.5), rand(dim, scale=0.1),
            rand(rank + 2 * state, dim, scale=0.3), rand(dim, rank, scale=0.3), rand(dim, scale=0.1) - 2.0,
            -torch.rand(dim, state, device="cuda", generator=g) * 2 - 0.1, rand(dim))
    expected = miccss_scans_reference(*[a.double() for a in args])
    got = miccss_scans(*args)
    assert _relative_error(got, expected) < 1e-4
