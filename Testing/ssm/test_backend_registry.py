"""Scan backend registry: registration, resolution order, environment override, clear failures."""

from __future__ import annotations

import logging

import pytest
import torch

from nnmamba.errors import BackendUnavailableError
from nnmamba.ssm import backends
from nnmamba.ssm.backend_choice import resolve_backend
from nnmamba.ssm import mamba as mamba_module
from nnmamba.ssm.mamba import Mamba


def test_reference_and_torch_backends_are_always_available_on_cpu():
    assert {"reference", "torch"} <= set(backends.available_backends("cpu"))
    assert "mamba_ssm" in backends.backend_names()


def test_auto_picks_torch_on_cpu(monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    assert resolve_backend("auto", "cpu") == "torch"


def test_environment_variable_overrides_auto_but_not_an_explicit_name(monkeypatch):
    monkeypatch.setenv(backends.ENV_VAR, "reference")
    assert resolve_backend("auto", "cpu") == "reference"
    assert resolve_backend("torch", "cpu") == "torch"


def test_unknown_backend_name_raises_value_error_listing_the_known_ones():
    with pytest.raises(ValueError, match="expected one of: auto, .*reference.*torch"):
        resolve_backend("fastest", "cpu")


def test_mamba_ssm_asked_for_on_cpu_raises_naming_the_problem_instead_of_falling_back():
    with pytest.raises(BackendUnavailableError, match="mamba_ssm.*cannot run on cpu"):
        resolve_backend("mamba_ssm", "cpu")


def test_unavailable_backend_from_the_environment_raises_when_the_model_runs(monkeypatch):
    monkeypatch.setenv(backends.ENV_VAR, "mamba_ssm")
    block = Mamba(d_model=8)
    with pytest.raises(RuntimeError, match=f"set by {backends.ENV_VAR}"):
        block(torch.randn(1, 5, 8))


def test_a_new_backend_registers_in_one_line_and_a_model_uses_it(monkeypatch):
    calls = []

    def counting_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
        calls.append(u.shape)
        return backends.get_backend("reference").fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus)

    monkeypatch.setitem(backends._REGISTRY, "counting", None)  # removed again after the test
    backends.register_backend("counting", counting_scan, lambda device: device.type == "cpu")
    block = Mamba(d_model=8, scan_backend="counting")
    block(torch.randn(2, 7, 8))
    assert calls == [torch.Size([2, 16, 7])]
    with pytest.raises(BackendUnavailableError):
        resolve_backend("counting", "meta")


def test_backend_is_resolved_once_per_device_dtype_and_mode_and_logged_once(caplog, monkeypatch):
    monkeypatch.setattr(mamba_module, "_logged", set())
    blocks = [Mamba(d_model=8, scan_backend="reference") for _ in range(2)]
    with caplog.at_level(logging.INFO, logger="nnmamba.ssm.mamba"):
        for block in blocks + blocks:
            block(torch.randn(1, 4, 8))
        with torch.no_grad():
            blocks[0](torch.randn(1, 4, 8))
    lines = [r.getMessage() for r in caplog.records if r.name == "nnmamba.ssm.mamba"]
    assert lines == [
        "selective scan on cpu for training in float32: backend 'reference' (asked for; fused inner "
        "function off: reference offers no fused inner function)",
        "selective scan on cpu for inference in float32: backend 'reference' (asked for; fused inner "
        "function off: reference offers no fused inner function)"]
    assert blocks[0]._resolved == {("cpu", torch.float32, "training"): ("reference", False),
                                   ("cpu", torch.float32, "inference"): ("reference", False)}


def test_an_unknown_backend_name_is_refused_when_the_block_is_built():
    with pytest.raises(ValueError, match="unknown scan backend 'fast'"):
        Mamba(d_model=8, scan_backend="fast")
