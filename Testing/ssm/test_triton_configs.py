"""The Triton kernels' launch configurations are fixed per GPU family ahead of time: no autotuning at run time."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nnmamba.ssm.triton_configs import (CONFIGS, FAMILIES, HOPPER, KernelConfig, config_for_capability,
                                        config_for_device, gpu_family)

PACKAGE = Path(__file__).resolve().parents[2] / "nnmamba"


@pytest.mark.parametrize("card, capability, family", [
    ("H100", (9, 0), "hopper"), ("H200", (9, 0), "hopper"), ("A100", (8, 0), "ampere"),
    ("RTX 3090", (8, 6), "ampere"), ("Jetson Orin", (8, 7), "ampere"), ("L4 / RTX 4090", (8, 9), "ada"),
    ("B200", (10, 0), "blackwell"), ("RTX 5090", (12, 0), "blackwell"), ("T4", (7, 5), "turing"),
    ("V100", (7, 0), "volta"), ("P100", (6, 0), "pre-volta"),
])
def test_each_card_maps_to_its_gpu_family(card, capability, family):
    assert gpu_family(capability) == family, card


def test_hopper_runs_the_configuration_measured_on_the_h100_and_h200():
    config, why = config_for_capability((9, 0))
    assert config is HOPPER
    assert (config.block_l, config.num_warps, config.miccss_block_l, config.miccss_num_warps) == (128, 2, 256, 2)
    assert (config.train_block_l, config.train_forward_block_l, config.backward_num_warps,
            config.backward_reversed_loads) == (64, 128, 2, False)
    assert why.startswith("hopper (sm_90): measured on H100")


def test_a_family_without_its_own_measurement_says_whose_configuration_it_runs():
    config, why = config_for_capability((8, 9))
    assert config is CONFIGS["hopper"]
    assert why == "ada (sm_89): not measured on this family; the hopper configuration"


def test_every_family_gets_a_configuration_the_kernels_accept():
    capabilities = [lowest for _, lowest in FAMILIES] + [(6, 1)]
    for capability in capabilities:
        config, _ = config_for_capability(capability)
        assert isinstance(config, KernelConfig)
        for tokens in (config.block_l, config.miccss_block_l, config.conv_block_l, config.train_block_l,
                       config.train_forward_block_l):
            assert tokens >= 16 and tokens & (tokens - 1) == 0, (capability, tokens)  # tl.arange needs 2^k
        assert config.train_forward_block_l % config.train_block_l == 0
        for warps in (config.num_warps, config.miccss_num_warps, config.conv_num_warps, config.backward_num_warps):
            assert warps in (1, 2, 4, 8, 16)


def test_the_interpreter_on_cpu_runs_the_shipped_hopper_configuration():
    assert config_for_device("cpu") is HOPPER


def test_a_sweep_override_replaces_one_field_for_every_device(monkeypatch):
    from nnmamba.ssm import triton_scan

    assert triton_scan.kernel_config(torch.device("cpu")) == HOPPER
    monkeypatch.setattr(triton_scan, "MICCSS_BLOCK_L", 16)
    config = triton_scan.kernel_config(torch.device("cpu"))
    assert config.miccss_block_l == 16
    assert config.block_l == HOPPER.block_l


def test_no_kernel_of_the_engine_is_autotuned_at_run_time():
    autotuned = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "triton.autotune" in p.read_text(encoding="utf-8")]
    assert autotuned == []
