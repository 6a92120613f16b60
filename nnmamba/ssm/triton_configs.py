"""Launch configurations of the Triton scan kernels, fixed per GPU family ahead of time (no autotuning).

An autotuner times every candidate configuration the first time each kernel runs in a process: on a
user's first `nnmamba predict` or first Apply in Slicer, that search is paid before the first
result, and again in every fresh process (its choice is not kept on disk). So the configurations
are chosen ahead, on the cards, by `benchmarks/gpu.py --sweep` (inference scans) and
`benchmarks/scan_gpu.py --sweep` (training scans), and kept in `CONFIGS` per GPU family; a device
is mapped to its family by its compute capability, and a family without a measured entry uses the
entry of the nearest measured family, saying so in the log.

Example:
    >>> config, why = config_for_capability((9, 0))
    >>> config.miccss_block_l, config.miccss_num_warps
    (256, 2)
    >>> config_for_capability((8, 6))[1]
    'ampere (sm_86): not measured on this family; the hopper configuration'
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Dict, Tuple

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KernelConfig:
    """Tokens per chunk (block_l) and warps per program of each Triton kernel of `triton_scan`.

    block_l / num_warps: the plain selective scan (inference, eager Mamba blocks);
    miccss_*: the four fused scans of a MICCSS layer; conv_*: its causal depth-wise convolution;
    train_block_l: tokens between the states the training forward saves (the backward's chunk);
    train_forward_block_l: the training forward's chunk (a multiple of train_block_l);
    backward_num_warps, backward_reversed_loads: the backward kernel (see _triton_scan_backward_kernels).
    """

    block_l: int
    num_warps: int
    miccss_block_l: int
    miccss_num_warps: int
    conv_block_l: int
    conv_num_warps: int
    train_block_l: int
    train_forward_block_l: int
    backward_num_warps: int
    backward_reversed_loads: bool
    measured_on: str


# Hopper, measured on an H100 (inference: benchmarks/RESULTS.md, 2026-11-25 sweep) and an H200
# (training: `scan_gpu.py --sweep`, 2026-12-01): inference scan 128 tokens x 2 warps, fused MICCSS
# 256 x 2; training 64 x 2 with Triton's reverse=True adjoint scan (2.71 ms fp32 forward+backward at
# batch 4, d_inner 128, d_state 16, L 32768; reversed loads 5.97 ms; 32 x 2 3.66 ms). One config for
# every input dtype: the backward loads 16-bit tiles in the float32 layout, so ptxas gives bf16 and
# fp32 the same code up to a few registers (64 x 2: 221 vs 230, no spills).
HOPPER = KernelConfig(block_l=128, num_warps=2, miccss_block_l=256, miccss_num_warps=2,
                      conv_block_l=1024, conv_num_warps=4, train_block_l=64, train_forward_block_l=128,
                      backward_num_warps=2, backward_reversed_loads=False,
                      measured_on="H100 (inference) and H200 (training), benchmarks/RESULTS.md")

CONFIGS: Dict[str, KernelConfig] = {"hopper": HOPPER}

# (family, lowest compute capability), newest first; a capability belongs to the first family whose
# lowest capability it reaches. Consumer Blackwell (sm_120) is listed before datacenter (sm_100).
FAMILIES: Tuple[Tuple[str, Tuple[int, int]], ...] = (
    ("blackwell", (12, 0)), ("blackwell", (10, 0)), ("hopper", (9, 0)), ("ada", (8, 9)),
    ("ampere", (8, 0)), ("turing", (7, 5)), ("volta", (7, 0)),
)
# where a family without its own entry takes its configuration from, in order of preference
FALLBACK_ORDER = ("hopper",)
# what runs the kernels under TRITON_INTERPRET=1 (CPU tensors): the configuration shipped for Hopper
INTERPRETER_FAMILY = "hopper"


def gpu_family(capability: Tuple[int, int]) -> str:
    """The family of a CUDA compute capability (major, minor); "pre-volta" below sm_70."""
    capability = tuple(int(c) for c in capability)
    for family, lowest in FAMILIES:
        if capability >= lowest:
            return family
    return "pre-volta"


def config_for_capability(capability: Tuple[int, int]) -> Tuple[KernelConfig, str]:
    """(the configuration, why it was chosen) for a device of this compute capability."""
    family = gpu_family(capability)
    sm = f"sm_{capability[0]}{capability[1]}"
    if family in CONFIGS:
        return CONFIGS[family], f"{family} ({sm}): measured on {CONFIGS[family].measured_on}"
    source = next(f for f in FALLBACK_ORDER if f in CONFIGS)
    return CONFIGS[source], f"{family} ({sm}): not measured on this family; the {source} configuration"


@functools.lru_cache(maxsize=None)
def config_for_device(device: str) -> KernelConfig:
    """The configuration of a CUDA device ("cuda:0"); a CPU device (only under TRITON_INTERPRET=1)
    gets the interpreter's. Chosen once per device per process and logged."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return CONFIGS[INTERPRETER_FAMILY]
    config, why = config_for_capability(torch.cuda.get_device_capability(device))
    log.info("Triton scan kernels on %s (%s): %s", device, torch.cuda.get_device_name(device), why)
    return config
