"""The `torch` scan backend against the `reference` oracle, per dtype, on awkward shapes and values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nnmamba.ssm import torch_scan
from nnmamba.ssm.reference_scan import selective_scan_reference
from nnmamba.ssm.torch_scan import selective_scan_torch


def make_inputs(batch, d_inner, d_state, length, dtype, delta_scale=1.0, a_scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    inputs = dict(
        u=rnd(batch, d_inner, length),
        delta=rnd(batch, d_inner, length) * delta_scale,
        A=-torch.exp(rnd(d_inner, d_state)) * a_scale,
        B=rnd(batch, d_state, length),
        C=rnd(batch, d_state, length),
        D=rnd(d_inner),
        z=rnd(batch, d_inner, length),
        delta_bias=rnd(d_inner) * 0.5,
    )
    return {k: v.to(dtype) for k, v in inputs.items()}


def relative_error(got, want):
    return ((got.double() - want.double()).abs().max() / want.double().abs().max().clamp_min(1e-30)).item()


def make_inputs_without_optional_arguments():
    """make_inputs without D, z and delta_bias; delta made >= 0, as these calls pass no delta_softplus."""
    inputs = make_inputs(2, 6, 5, 300, torch.float64)
    for key in ("D", "z", "delta_bias"):
        inputs.pop(key)
    inputs["delta"] = inputs["delta"].abs()
    return inputs


@pytest.mark.parametrize("batch,d_inner,d_state,length", [
    (1, 4, 3, 1),        # a single token
    (2, 8, 16, 37),      # odd L, batch > 1
    (3, 5, 4, 1000),     # L not a multiple of any chunk length
    (2, 16, 16, 4099),   # several chunks plus a ragged tail
])
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_torch_scan_matches_the_reference_scan(batch, d_inner, d_state, length, dtype, tolerance):
    inputs = make_inputs(batch, d_inner, d_state, length, dtype)
    want = selective_scan_reference(**inputs, delta_softplus=True)
    got = selective_scan_torch(**inputs, delta_softplus=True)
    assert got.dtype == dtype and got.shape == (batch, d_inner, length)
    assert relative_error(got, want) < tolerance


def test_torch_scan_matches_the_reference_without_optional_arguments():
    inputs = make_inputs_without_optional_arguments()
    want = selective_scan_reference(**inputs)
    got = selective_scan_torch(**inputs)
    assert relative_error(got, want) < 1e-10


def test_torch_scan_stays_finite_and_exact_when_delta_times_a_is_huge():
    # |delta * A| up to ~1e4 per token: exp(-sum) underflows and exp(+sum) would overflow in a
    # naive log-space scan; the reference handles it because every factor is <= 1.
    inputs = make_inputs(2, 8, 16, 700, torch.float32, delta_scale=30.0, a_scale=20.0, seed=3)
    want = selective_scan_reference(**inputs, delta_softplus=True)
    got = selective_scan_torch(**inputs, delta_softplus=True)
    assert torch.isfinite(got).all()
    assert relative_error(got, want) < 2e-5


def test_torch_scan_is_exact_with_a_tiny_chunk_length(monkeypatch):
    # forces many chunks so the carry across chunk borders is exercised hard
    monkeypatch.setattr(torch_scan, "_SLAB_ELEMENTS", 8)
    inputs = make_inputs(2, 4, 2, 333, torch.float64)
    want = selective_scan_reference(**inputs, delta_softplus=True)
    got = selective_scan_torch(**inputs, delta_softplus=True)
    assert relative_error(got, want) < 1e-10


def test_torch_scan_keeps_a_float32_state_for_bfloat16_inputs():
    inputs64 = make_inputs(2, 8, 16, 200, torch.float64)
    want = selective_scan_reference(**inputs64, delta_softplus=True)
    inputs = {k: v.to(torch.bfloat16) for k, v in inputs64.items()}
    got = selective_scan_torch(**inputs, delta_softplus=True)
    assert got.dtype == torch.bfloat16
    # bfloat16 keeps 8 bits of mantissa: inputs and output rounding only, no drift along L
    assert relative_error(got, want) < 3e-2
    want_rounded = selective_scan_reference(**inputs, delta_softplus=True)
    assert relative_error(got, want_rounded) < 1e-2


def test_torch_scan_gradients_equal_the_reference_gradients():
    inputs = make_inputs(2, 4, 3, 50, torch.float64)
    grads = []
    for fn in (selective_scan_reference, selective_scan_torch):
        leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
        y = fn(**leaves, delta_softplus=True)
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        grads.append({k: v.grad for k, v in leaves.items()})
    for key in inputs:
        assert relative_error(grads[1][key], grads[0][key]) < 1e-9, key


def test_torch_scan_gradients_are_exact_across_many_chunks_and_groups(monkeypatch):
    # tiny slabs and groups: the backward carry across chunks and the group recompute both run
    monkeypatch.setattr(torch_scan, "_SLAB_ELEMENTS", 16)
    monkeypatch.setattr(torch_scan, "_MAX_CHUNK", 7)
    monkeypatch.setattr(torch_scan, "_GROUP_ELEMENTS", 200)
    inputs = make_inputs(2, 3, 2, 101, torch.float64, seed=5)
    grads = []
    for fn in (selective_scan_reference, selective_scan_torch):
        leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
        y = fn(**leaves, delta_softplus=True)
        (y * torch.cos(torch.arange(y.numel(), dtype=y.dtype)).view_as(y)).sum().backward()
        grads.append({k: v.grad for k, v in leaves.items()})
    for key in inputs:
        assert relative_error(grads[1][key], grads[0][key]) < 1e-9, key


def test_torch_scan_gradients_in_float32_are_close_to_float64():
    inputs = make_inputs(2, 8, 4, 300, torch.float64, seed=7)
    grads = {}
    for dtype in (torch.float64, torch.float32):
        leaves = {k: v.detach().to(dtype).clone().requires_grad_(True) for k, v in inputs.items()}
        selective_scan_torch(**leaves, delta_softplus=True).square().sum().backward()
        grads[dtype] = {k: v.grad for k, v in leaves.items()}
    for key in inputs:
        assert relative_error(grads[torch.float32][key], grads[torch.float64][key]) < 1e-4, key


def test_reference_scan_matches_the_textbook_recurrence_on_a_hand_checked_case():
    # one channel, one state: h = exp(d*a) h + d*b*u, y = c*h + D*u
    u = torch.tensor([[[1.0, 2.0, -1.0]]], dtype=torch.float64)
    delta = torch.tensor([[[0.5, 1.0, 2.0]]], dtype=torch.float64)
    A = torch.tensor([[-1.0]], dtype=torch.float64)
    B = torch.tensor([[[1.0, 0.5, 2.0]]], dtype=torch.float64)
    C = torch.tensor([[[2.0, 1.0, 1.0]]], dtype=torch.float64)
    D = torch.tensor([0.25], dtype=torch.float64)
    h, expected = 0.0, []
    for t in range(3):
        h = torch.exp(delta[0, 0, t] * A[0, 0]).item() * h + (delta[0, 0, t] * B[0, 0, t] * u[0, 0, t]).item()
        expected.append(C[0, 0, t].item() * h + 0.25 * u[0, 0, t].item())
    got = selective_scan_reference(u, delta, A, B, C, D)
    assert torch.allclose(got[0, 0], torch.tensor(expected, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(selective_scan_torch(u, delta, A, B, C, D), got, atol=1e-12)


def test_softplus_and_gate_are_applied_like_mamba_ssm():
    inputs = make_inputs(1, 3, 2, 20, torch.float64)
    plain = dict(inputs)
    z, bias = plain.pop("z"), plain.pop("delta_bias")
    plain["delta"] = F.softplus(inputs["delta"] + bias[:, None])
    want = selective_scan_reference(**plain) * F.silu(z)
    got = selective_scan_torch(**inputs, delta_softplus=True)
    assert relative_error(got, want) < 1e-12


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 2e-5), (torch.float64, 1e-10)])
def test_torch_scan_on_cuda_matches_the_reference_on_cpu(dtype, tolerance):
    inputs = make_inputs(2, 16, 16, 1500, dtype)
    want = selective_scan_reference(**inputs, delta_softplus=True)
    got = selective_scan_torch(**{k: v.cuda() for k, v in inputs.items()}, delta_softplus=True)
    assert relative_error(got.cpu(), want) < tolerance


@pytest.mark.gpu
def test_mamba_ssm_backend_matches_the_reference_where_it_imports():
    from nnmamba.ssm import backends

    if not backends.get_backend("mamba_ssm").is_available(torch.device("cuda")):
        pytest.skip(backends.get_backend("mamba_ssm").reason("cuda"))
    inputs = make_inputs(2, 16, 16, 1500, torch.float32)
    want = selective_scan_reference(**inputs, delta_softplus=True)
    got = backends.get_backend("mamba_ssm").fn(**{k: v.cuda() for k, v in inputs.items()}, delta_softplus=True)
    assert relative_error(got.cpu(), want) < 2e-5


def test_both_scans_ignore_autocast_and_keep_float32_state():
    inputs = make_inputs(2, 8, 16, 300, torch.float32)
    want = selective_scan_reference(**inputs, delta_softplus=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = selective_scan_reference(**inputs, delta_softplus=True)
        got = selective_scan_torch(**inputs, delta_softplus=True)
    assert ref.dtype == got.dtype == torch.float32
    assert relative_error(ref, want) < 1e-6
    assert relative_error(got, want) < 2e-5
