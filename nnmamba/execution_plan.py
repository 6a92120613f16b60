"""One place decides how a network runs: `make_plan(network, device, dtype, mode)` -> `ExecutionPlan`.

A plan is made once per (network, device, compute dtype, mode = "inference" | "training") and
logged. It holds the scan backend, chosen from what each backend *declares* in the registry
(`nnmamba.ssm.backends`: devices, dtypes, gradients, fused forms, speed rank), and the fused forms:
mamba-ssm's fused inner function, fused MICCSS (`nnmamba.inference.fast_path.FusedMiccss`),
BatchNorm folding, channels-last layout, CUDA graphs per input shape; plus the convolution path. A
combination that cannot run is refused with `PlanError`, which names the fix: a forward-only scan
when gradients are needed, a fused form whose package is missing, an override that contradicts the
mode or device. Nothing is swapped silently for something slower or for something that does not
train; every decision carries its reason (`plan.reasons`, `plan.describe()`).

Example:
    >>> net = build_network("nnMambaSeg", in_ch=1, channels=32, blocks=3, number_classes=6)
    >>> plan = make_plan(net, "cuda", torch.bfloat16, mode="training")   # logged at INFO
    >>> net = apply_plan(net.cuda(), plan)        # every Mamba block gets the plan's backend
    >>> fast = apply_plan(net, make_plan(net, "cuda", torch.bfloat16))    # inference fast copy

This module only decides. The scan backend choice is the capability query of
`nnmamba.ssm.backend_choice` (pure `choose_scan_backend(declarations, device, dtype, mode)`, so it
can be checked for a CUDA device without one; `plan_from_declarations` for a whole plan); making a
model run as a plan says (`apply_plan`: fused copy, folded BatchNorms, CUDA graphs) is
`nnmamba.inference.plan_application`. Layers: ssm < networks < execution_plan < inference.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from nnmamba.errors import PlanError
from nnmamba.networks.miccss import FUSED_MICCSS_DTYPES
from nnmamba.ssm import backends
from nnmamba.ssm.backend_choice import (INFERENCE, MODES, TRAINING, choose_scan_backend, decide_fused_inner,
                                        dtype_name)
from nnmamba.ssm.backends import AUTO, Declaration

logger = logging.getLogger(__name__)

PLAN_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
OVERRIDABLE = ("fused_inner", "fused_miccss", "fold_batchnorm", "channels_last", "cuda_graphs")
# the backend the fused MICCSS layers run their scans in (nnmamba.ssm.triton_scan.miccss_scans)
MICCSS_SCAN_BACKEND = "triton"
CONV_PATH_WHY = {
    "cudnn": "cuDNN convolutions (PyTorch's CUDA path)",
    "onednn": "3x3x3 Conv3d through oneDNN on CPU float32 (rule in nnmamba/networks/blocks.py)",
    "native": "PyTorch's own convolution kernels",
}

NetworkLike = Union[nn.Module, str, Mapping, object]


@dataclass(frozen=True)
class ExecutionPlan:
    """How one network runs on one device in one dtype and mode; see the module docstring."""

    network: str
    device: torch.device
    dtype: torch.dtype
    mode: str
    scan_backend: str
    fused_inner: bool
    fused_miccss: bool
    fold_batchnorm: bool
    channels_last: bool
    cuda_graphs: bool
    conv_path: str
    reasons: Tuple[Tuple[str, str], ...]

    def describe(self) -> str:
        """Multi-line text: one line per decision with its value and why."""
        lines = [f"execution plan: {self.network} on {self.device}, {dtype_name(self.dtype)}, {self.mode}"]
        lines += ["  " + format_decision(decision, getattr(self, decision), why) for decision, why in self.reasons]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        """The plan as JSON-able data."""
        return {"network": self.network, "device": str(self.device), "dtype": dtype_name(self.dtype),
                "mode": self.mode, "scan_backend": self.scan_backend, "fused_inner": self.fused_inner,
                "fused_miccss": self.fused_miccss, "fold_batchnorm": self.fold_batchnorm,
                "channels_last": self.channels_last, "cuda_graphs": self.cuda_graphs,
                "conv_path": self.conv_path, "reasons": [list(r) for r in self.reasons]}


@dataclass(frozen=True)
class NetworkFacts:
    """What the planner needs to know about a network's structure."""

    name: str
    mamba_blocks: int
    miccss_layers: int
    batchnorms: int


def format_decision(decision: str, value, why: str) -> str:
    """One decision as `describe` shows it: its name, its value (yes/no for a flag) and why."""
    shown = ("yes" if value else "no") if isinstance(value, bool) else str(value)
    return f"{decision:15s} {shown:9s} {why}"


# ---- the pure choices (the scan backend itself: nnmamba.ssm.backend_choice) ---------------------

def _decide_fold(facts: NetworkFacts, mode: str, forced: Optional[bool]) -> Tuple[bool, str]:
    if mode == TRAINING:
        if forced:
            raise PlanError("fold_batchnorm=True in training: the BatchNorms must keep learning their "
                            "statistics. Fix: fold only for inference (mode='inference').")
        return False, "inference only (BatchNorm statistics train)"
    if facts.batchnorms == 0:
        if forced:
            raise PlanError(f"fold_batchnorm=True: {facts.name} has no BatchNorm3d to fold. Fix: leave it unset.")
        return False, "no BatchNorm3d in the network"
    if forced is False:
        return False, "turned off (override)"
    return True, "eval BatchNorms folded into the convolutions before them (exact up to rounding)"


def _miccss_fusable(facts: NetworkFacts, by_name: Dict[str, Declaration], dtype: torch.dtype, mode: str,
                    fold: bool) -> Tuple[bool, str]:
    """(can the MICCSS layers run fused?, why not / what it does)."""
    if mode == TRAINING:
        return False, "inference only (the fused copy has no backward)"
    if facts.miccss_layers == 0:
        return False, f"{facts.name} has no MICCSS layer"
    triton = by_name.get(MICCSS_SCAN_BACKEND)
    if triton is None or not triton.available:
        return False, f"needs the Triton scans: {triton.why_not if triton else 'triton backend not registered'}"
    if dtype not in FUSED_MICCSS_DTYPES:
        return False, f"the fast copy is built in float32, bfloat16 or float16, not {dtype_name(dtype)}"
    if not fold:
        return False, "needs folded BatchNorms (fold_batchnorm)"
    return True, "flips as weight permutations + reverse scans, four scans in one Triton launch"


def _decide_miccss(fusable: Tuple[bool, str], scan_backend: str, forced: Optional[bool]) -> Tuple[bool, str]:
    ok, why = fusable
    if not ok:
        if forced:
            raise PlanError(f"fused_miccss=True is impossible here: {why}. Fix: leave fused_miccss unset.")
        return False, why
    if scan_backend != MICCSS_SCAN_BACKEND:
        if forced:
            raise PlanError(f"fused_miccss=True runs the MICCSS scans in '{MICCSS_SCAN_BACKEND}', but scan "
                            f"backend {scan_backend!r} was asked for. Fix: scan_backend='{MICCSS_SCAN_BACKEND}' "
                            f"or 'auto'.")
        return False, f"the MICCSS scans stay on {scan_backend!r}, asked for by name"
    if forced is False:
        return False, "turned off (override)"
    return True, why


def _decide_training_layout(device: torch.device, want: Optional[bool]) -> Tuple[bool, str]:
    """Channels-last 3-D in training: model and batches NDHWC, so cuDNN's convolutions and BatchNorms
    run without layout conversions and MICCSS's flatten to tokens is free. On by default on CUDA, where
    benchmarks/train_step.py measured it faster (H200, nnMambaSeg(1, 32, 3, 6), 2x1x128^3, triton:
    72.1 ms/step with cudnn.benchmark against 101.2 ms contiguous); off on CPU (same numbers, not faster)."""
    if want is False:
        return False, "turned off (override)"
    if device.type != "cuda":
        if want:
            return True, "turned on (override); on CPU it trains the same numbers, not faster"
        return False, "on CPU channels-last trains the same numbers, not faster"
    if want:
        return True, "turned on (override): model and batches in channels_last_3d"
    return True, "model and batches in channels_last_3d: cuDNN NDHWC convolutions and BatchNorms " \
                 "(measured 0.71x the contiguous step, benchmarks/RESULTS.md)"


def _decide_inference_flag(want: Optional[bool], fused_miccss: bool, device: torch.device,
                           on_why: str) -> Tuple[bool, str]:
    """channels_last or cuda_graphs in inference: the override, else on with the fused copy on CUDA."""
    if want is not None:
        return want, f"turned {'on' if want else 'off'} (override)"
    if fused_miccss and device.type == "cuda":
        return True, on_why
    return False, "measured only with the fused copy on CUDA"


def _decide_channels_last(device: torch.device, mode: str, fused_miccss: bool,
                          want: Optional[bool]) -> Tuple[bool, str]:
    if mode == TRAINING:
        return _decide_training_layout(device, want)
    return _decide_inference_flag(want, fused_miccss, device,
                                  "measured with the fused copy on CUDA (benchmarks/RESULTS.md)")


def _decide_cuda_graphs(device: torch.device, mode: str, fused_miccss: bool,
                        want: Optional[bool]) -> Tuple[bool, str]:
    if mode == TRAINING:
        if want:
            raise PlanError("cuda_graphs=True in training: this engine uses it in the inference fast copy only. "
                            "Fix: leave cuda_graphs unset for training.")
        return False, "inference only"
    if device.type != "cuda":
        if want:
            raise PlanError(f"cuda_graphs=True on {device}: CUDA graphs need a CUDA device. Fix: leave "
                            f"cuda_graphs unset or use device='cuda'.")
        return False, "CUDA devices only"
    return _decide_inference_flag(want, fused_miccss, device, "one graph per input shape, replayed per tile")


def conv_path_for(device: torch.device, dtype: torch.dtype) -> str:
    """Which convolution kernels run: "cudnn", "onednn" (the CPU float32 rule of blocks.Conv3d) or "native"."""
    if device.type == "cuda":
        return "cudnn" if torch.backends.cudnn.is_available() else "native"
    if (device.type == "cpu" and dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled):
        return "onednn"
    return "native"


def plan_from_declarations(facts: NetworkFacts, declared: Sequence[Declaration], device: torch.device,
                           dtype: torch.dtype, mode: str, requested: str = AUTO, source: str = "asked for",
                           overrides: Optional[Mapping[str, Optional[bool]]] = None) -> ExecutionPlan:
    """The whole plan from declarations (pure: no look at the machine beyond the conv path)."""
    overrides = dict(overrides or {})
    device = torch.device(device)
    by_name = {d.name: d for d in declared}
    fold = _decide_fold(facts, mode, overrides.get("fold_batchnorm"))
    fusable = _miccss_fusable(facts, by_name, dtype, mode, fold[0])
    prefer = None
    if fusable[0] and overrides.get("fused_miccss") is not False:
        prefer = MICCSS_SCAN_BACKEND
    scan = choose_scan_backend(declared, device, dtype, mode, requested, source, prefer,
                               "auto: fused MICCSS runs its scans in Triton, the fastest measured inference "
                               "(benchmarks/RESULTS.md)")
    if facts.mamba_blocks == 0:
        fused_inner = (False, "no Mamba block in the network")
        if overrides.get("fused_inner"):
            raise PlanError(f"fused_inner=True: {facts.name} has no Mamba block. Fix: leave it unset.")
    else:
        fused_inner = decide_fused_inner(by_name[scan[0]], overrides.get("fused_inner"))
    miccss = _decide_miccss(fusable, scan[0], overrides.get("fused_miccss"))
    layout = _decide_channels_last(device, mode, miccss[0], overrides.get("channels_last"))
    graphs = _decide_cuda_graphs(device, mode, miccss[0], overrides.get("cuda_graphs"))
    conv = conv_path_for(device, dtype)
    decisions = (("scan_backend", scan), ("fused_inner", fused_inner), ("fused_miccss", miccss),
                 ("fold_batchnorm", fold), ("channels_last", layout), ("cuda_graphs", graphs),
                 ("conv_path", (conv, CONV_PATH_WHY[conv])))
    values = {name: value for name, (value, _) in decisions}
    return ExecutionPlan(network=facts.name, device=device, dtype=dtype, mode=mode, **values,
                         reasons=tuple((name, why) for name, (_, why) in decisions))


# ---- the machine and the network ----------------------------------------------------------------

def _check_device(device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PlanError(f"device {device} asked for, but no CUDA device is visible to torch. Fix: use "
                            f"device='cpu', or install a CUDA build of PyTorch and check the driver.")
        index = torch.cuda.current_device() if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise PlanError(f"device {device} asked for, but torch sees {torch.cuda.device_count()} CUDA "
                            f"device(s). Fix: use cuda:0..cuda:{torch.cuda.device_count() - 1}.")
        device = torch.device("cuda", index)
    return device


def _check_arguments(dtype, mode: str, overrides: Mapping) -> None:
    if dtype not in PLAN_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(dtype_name(d) for d in PLAN_DTYPES)}, got {dtype}")
    if mode not in MODES:
        raise ValueError(f"mode must be 'inference' or 'training', got {mode!r}")
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise ValueError(f"make_plan cannot override {', '.join(unknown)}; it can force: {', '.join(OVERRIDABLE)}")
    for name, value in overrides.items():
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"override {name} must be True, False or None, got {value!r}")


def facts_of_module(model: nn.Module) -> NetworkFacts:
    """Counts of (distinct) Mamba blocks, MICCSS layers and BatchNorm3d layers in `model`."""
    from nnmamba.networks.miccss import MambaLayer
    from nnmamba.ssm.mamba import Mamba

    modules = list(model.modules())  # distinct modules: a shared MambaLayer counts once
    return NetworkFacts(type(model).__name__, sum(isinstance(m, Mamba) for m in modules),
                        sum(isinstance(m, MambaLayer) and m.directions == "miccss" for m in modules),
                        sum(isinstance(m, nn.BatchNorm3d) for m in modules))


def network_facts(network: NetworkLike) -> NetworkFacts:
    """Facts of an nn.Module, a network name (default hyperparameters), a ModelCard or a card dict.

    Names and cards are built on the meta device: no memory, no initialisation cost.
    """
    if isinstance(network, nn.Module):
        return facts_of_module(network)
    if isinstance(network, str):
        name, hyperparameters = network, {}
    elif isinstance(network, Mapping):
        if "network" not in network:
            raise ValueError("a card dict needs a 'network' entry (and usually 'hyperparameters')")
        name, hyperparameters = network["network"], dict(network.get("hyperparameters") or {})
    elif hasattr(network, "network") and hasattr(network, "hyperparameters"):
        name, hyperparameters = network.network, dict(network.hyperparameters)
    else:
        raise ValueError(f"network must be an nn.Module, a network name, a ModelCard or a card dict, "
                         f"got {type(network).__name__}")
    from nnmamba.networks import network_class

    cls = network_class(name)
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op")
        model = cls(**hyperparameters)
    facts = facts_of_module(model)
    return NetworkFacts(name, facts.mamba_blocks, facts.miccss_layers, facts.batchnorms)


def make_plan(network: NetworkLike, device, dtype: torch.dtype = torch.float32, mode: str = INFERENCE,
              scan_backend: str = AUTO, **overrides: Optional[bool]) -> ExecutionPlan:
    """Decide and log the plan for `network` on `device`; see the module docstring.

    `scan_backend`: "auto" (honours NNMAMBA_SCAN_BACKEND) or a registered name. `overrides` force a
    fused form on (True) or off (False): fused_inner, fused_miccss, fold_batchnorm, channels_last,
    cuda_graphs. ValueError for bad arguments; PlanError (a RuntimeError) for what cannot run here.
    """
    _check_arguments(dtype, mode, overrides)
    requested, source = backends.requested_backend(scan_backend)
    device = _check_device(device)   # an unknown backend name: ValueError from choose_scan_backend
    plan = plan_from_declarations(network_facts(network), backends.declarations(device), device, dtype, mode,
                                  requested, source, overrides)
    logger.info("%s", plan.describe())
    return plan


def to_plan_layout(batch: torch.Tensor, plan: ExecutionPlan) -> torch.Tensor:
    """batch: (batch, channels, k, j, i) in the plan's memory layout (channels_last_3d or as it is)."""
    if plan.channels_last and batch.dim() == 5:
        return batch.contiguous(memory_format=torch.channels_last_3d)
    return batch
