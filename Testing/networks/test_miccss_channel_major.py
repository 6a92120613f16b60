"""MICCSS on a channel-layout backend (flips as weight permutations, one token-flip copy) equals the
four-flip form of the token-major layer, values and gradients, in float64."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

from channel_layout_backend import channel_layout_backend
from nnmamba.networks.miccss import MambaLayer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ssm"))
from module_gradients import output_and_gradients  # noqa: E402


@pytest.mark.parametrize("proj_bias", [False, True])
@pytest.mark.parametrize("directions", ["miccss", "forward"])
def test_channel_major_miccss_equals_the_token_major_layer_with_gradients(proj_bias, directions):
    torch.manual_seed(0)
    tokens = MambaLayer(6, d_state=4, directions=directions, scan_backend="torch").double().train()
    if proj_bias:  # upstream has no projection biases; the weight-flip form must handle them anyway
        for proj in (tokens.mamba.in_proj, tokens.mamba.out_proj):
            proj.bias = torch.nn.Parameter(torch.randn(proj.out_features, dtype=torch.float64))
    x = torch.randn(2, 6, 3, 4, 5, dtype=torch.float64)
    with channel_layout_backend() as name:
        channels = copy.deepcopy(tokens)
        channels.mamba.set_scan_backend(name)
        assert channels.mamba.channel_major(x) and not tokens.mamba.channel_major(x)
        got = output_and_gradients(channels, x)
    want = output_and_gradients(tokens, x)
    assert torch.allclose(got[0], want[0], rtol=0, atol=1e-12)
    assert torch.allclose(got[1], want[1], rtol=0, atol=1e-12)
    for name in want[2]:
        assert torch.allclose(got[2][name], want[2][name], rtol=0, atol=1e-11), name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: CPU Conv3d does not keep channels-last 3-D")
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last_3d])
def test_miccss_output_keeps_the_network_memory_layout_on_cuda(memory_format):
    layer = MambaLayer(8, d_state=4).cuda().to(memory_format=memory_format).train()
    x = torch.randn(2, 8, 4, 4, 4, device="cuda").contiguous(memory_format=memory_format)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = layer(x)
    assert out.is_contiguous(memory_format=memory_format)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA for the triton backend")
def test_triton_channel_major_miccss_matches_the_torch_token_major_layer_on_cuda():
    from nnmamba.ssm import backends

    if not backends.get_backend("triton").runs_on("cuda") or not backends.get_backend("triton").supports_grad:
        pytest.fail(f"the triton backend cannot train here: {backends.get_backend('triton').reason('cuda')}")
    torch.manual_seed(0)
    tokens = MambaLayer(16, scan_backend="torch").cuda().train()
    channels = copy.deepcopy(tokens)
    channels.mamba.set_scan_backend("triton")
    x = torch.randn(2, 16, 8, 8, 8, device="cuda")
    assert channels.mamba.channel_major(x.requires_grad_(True))
    got, want = output_and_gradients(channels, x.detach()), output_and_gradients(tokens, x.detach())
    scale = want[0].abs().max()
    assert (got[0] - want[0]).abs().max() <= 1e-3 * scale
    assert (got[1] - want[1]).abs().max() <= 1e-3 * want[1].abs().max()
    for name in want[2]:
        assert (got[2][name] - want[2][name]).abs().max() <= 2e-3 * want[2][name].abs().max() + 1e-6, name
