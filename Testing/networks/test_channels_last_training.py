"""A training step in channels_last_3d (the plan's channels_last, model and batch) gives the loss,
gradients and Adam update of the contiguous step; on the token-major and channel-major Mamba paths."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from channel_layout_backend import channel_layout_backend
from nnmamba.execution_plan import make_plan, to_plan_layout
from nnmamba.inference.plan_application import apply_plan
from nnmamba.networks import build_network


def _step(model, x, target, channels_last: bool):
    plan = make_plan(model, "cpu", torch.float64, mode="training", channels_last=channels_last)
    apply_plan(model, plan)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = F.cross_entropy(model(to_plan_layout(x, plan)), target)
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    optimizer.step()
    return loss.detach(), grads, {k: p.detach() for k, p in model.named_parameters()}


@pytest.mark.parametrize("path", ["tokens", "channels"])
def test_a_channels_last_training_step_equals_the_contiguous_step_in_float64(path):
    torch.manual_seed(0)
    with channel_layout_backend() as channel_backend:
        backend = "torch" if path == "tokens" else channel_backend
        contiguous = build_network("nnMambaSeg", in_ch=1, channels=4, blocks=2, number_classes=3,
                                   scan_backend=backend).double().train()
        channels_last = copy.deepcopy(contiguous)
        x = torch.randn(2, 1, 16, 16, 16, dtype=torch.float64)
        target = torch.randint(0, 3, (2, 16, 16, 16))
        want = _step(contiguous, x, target, channels_last=False)
        got = _step(channels_last, x, target, channels_last=True)
    conv = next(m for m in channels_last.modules() if isinstance(m, torch.nn.Conv3d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.allclose(got[0], want[0], rtol=1e-12, atol=0)
    for name in want[1]:
        assert torch.allclose(got[1][name], want[1][name], rtol=1e-9, atol=1e-12), name
        assert torch.allclose(got[2][name], want[2][name], rtol=1e-9, atol=1e-12), name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (cuDNN channels-last 3-D, triton)")
def test_a_channels_last_training_step_on_cuda_with_triton_matches_the_contiguous_step():
    def step(model, channels_last):
        plan = make_plan(model, "cuda", torch.float32, mode="training", scan_backend="triton",
                         channels_last=channels_last)
        apply_plan(model, plan)
        loss = F.cross_entropy(model(to_plan_layout(x, plan)), target)
        loss.backward()
        return loss.detach(), {k: p.grad for k, p in model.named_parameters()}

    torch.manual_seed(0)
    contiguous = build_network("nnMambaSeg", in_ch=1, channels=8, blocks=2, number_classes=3).cuda().train()
    channels_last = copy.deepcopy(contiguous)
    x = torch.randn(2, 1, 32, 32, 32, device="cuda")
    target = torch.randint(0, 3, (2, 32, 32, 32), device="cuda")
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 both ways, so only the layout differs
    try:
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            want, got = step(contiguous, False), step(channels_last, True)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
    assert abs(float(got[0]) - float(want[0])) <= 1e-4 * abs(float(want[0]))
    for name, grad in want[1].items():
        if grad.numel():  # the attention's hidden Linear is empty at 8 channels (dim // 16 == 0)
            assert (got[1][name] - grad).abs().max() <= 2e-3 * grad.abs().max() + 1e-6, name
