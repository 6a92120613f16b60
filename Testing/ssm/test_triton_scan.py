"""The `triton` scan backend: registration and refusals everywhere, results against the reference on CUDA."""

from __future__ import annotations

import pytest
import torch

from nnmamba.errors import BackendUnavailableError
from nnmamba.networks.miccss import MambaLayer
from nnmamba.ssm import backends
from nnmamba.ssm.backend_choice import resolve_backend
from nnmamba.ssm.reference_scan import selective_scan_reference
from nnmamba.ssm.triton_scan import selective_scan_triton


def _scan_inputs(batch, dim, state, length, dtype, device, seed):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device)

    return dict(u=rand(batch, dim, length).to(dtype), delta=rand(batch, dim, length, scale=0.5).to(dtype),
                A=-torch.rand(dim, state, generator=g).to(device) * 3, B=rand(batch, state, length).to(dtype),
                C=rand(batch, state, length).to(dtype), D=rand(dim), z=rand(batch, dim, length).to(dtype),
                delta_bias=rand(dim, scale=0.3))


def test_triton_backend_is_registered_under_its_name():
    assert "triton" in backends.backend_names()


def test_triton_backend_is_not_available_on_cpu_and_says_it_needs_cuda():
    backend = backends.get_backend("triton")
    assert not backend.is_available(torch.device("cpu"))
    assert "CUDA" in backend.reason("cpu")


def test_asking_for_triton_on_cpu_raises_instead_of_falling_back(monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    with pytest.raises(BackendUnavailableError, match="triton"):
        resolve_backend("triton", "cpu")


def test_auto_never_picks_triton_on_cpu(monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    assert resolve_backend("auto", "cpu") == "torch"


def test_triton_scan_refuses_cpu_tensors_with_a_clear_error():
    x = _scan_inputs(1, 2, 4, 8, torch.float32, "cpu", seed=0)
    with pytest.raises((ValueError, RuntimeError), match="CUDA|triton|Triton"):
        selective_scan_triton(**x, delta_softplus=True)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2), (torch.float16, 4e-3)])
@pytest.mark.parametrize("shape", [(2, 5, 16, 300), (1, 3, 5, 129), (3, 8, 8, 1)])
def test_triton_scan_matches_the_reference_per_dtype(dtype, tol, shape):
    batch, dim, state, length = shape
    x = _scan_inputs(batch, dim, state, length, dtype, "cuda", seed=length)
    expected = selective_scan_reference(**{k: v.double() for k, v in x.items()}, delta_softplus=True)
    got = selective_scan_triton(**x, delta_softplus=True)
    assert got.dtype == dtype and torch.isfinite(got).all()
    error = (got.double() - expected).abs().max() / expected.abs().max()
    assert error < tol


@pytest.mark.gpu
def test_triton_scan_without_optional_inputs_matches_the_reference():
    x = _scan_inputs(2, 4, 16, 200, torch.float32, "cuda", seed=7)
    for key in ("D", "z", "delta_bias"):
        x.pop(key)
    expected = selective_scan_reference(**x)
    got = selective_scan_triton(**x)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_triton_scan_accepts_views_with_strided_tokens_like_mamba_passes_them():
    x = _scan_inputs(2, 4, 16, 64, torch.float32, "cuda", seed=3)
    z_strided = torch.cat([x["z"], x["z"]], dim=1).transpose(1, 2).contiguous().transpose(1, 2)[:, :4]
    expected = selective_scan_reference(**x, delta_softplus=True)
    x["z"] = z_strided
    got = selective_scan_triton(**x, delta_softplus=True)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_mamba_layer_on_the_triton_backend_matches_the_torch_backend():
    torch.manual_seed(0)
    layer = MambaLayer(32, scan_backend="torch").cuda().eval()
    x = torch.randn(2, 32, 8, 8, 8, device="cuda")
    with torch.no_grad():
        expected = layer(x)
        layer.mamba.set_scan_backend("triton")
        got = layer(x)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4)
