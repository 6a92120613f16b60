"""Network registry and `build_network`.

    >>> net = build_network("nnMambaSeg", in_ch=1, channels=32, blocks=3, number_classes=6,
    ...                     scan_backend="auto")

NETWORKS maps a name to "module:Class" (imported on first use). Add a network with one line here
or with `register_network(name, cls)`.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Dict, List, Union

import torch.nn as nn

from nnmamba.ssm import backends
from nnmamba.ssm.mamba import Mamba

NETWORKS: Dict[str, Union[str, type]] = {
    "nnMambaSeg": "nnmamba.networks.nnmamba_seg:nnMambaSeg",
    "nnMambaLandmark": "nnmamba.networks.nnmamba_seg:nnMambaLandmark",
    "nnMambaEncoder": "nnmamba.networks.nnmamba_cls:nnMambaEncoder",
    "SegMamba": "nnmamba.networks.segmamba:SegMamba",
    "TamingSegMamba": "nnmamba.networks.taming:TamingSegMamba",
    "BiSegMamba": "nnmamba.networks.taming:BiSegMamba",
    "SegMambaSkip": "nnmamba.networks.taming:SegMambaSkip",
    "MultiSegMamba": "nnmamba.networks.taming:MultiSegMamba",
}


def register_network(name: str, cls: Union[str, type]) -> None:
    """Make `build_network(name, ...)` build `cls` (a class or "module:Class")."""
    NETWORKS[name] = cls


def network_names() -> List[str]:
    return sorted(NETWORKS)


def network_class(name: str) -> type:
    """The class registered as `name` (ValueError naming the known networks if there is none)."""
    try:
        entry = NETWORKS[name]
    except KeyError:
        raise ValueError(f"unknown network {name!r}; expected one of: {', '.join(network_names())}") from None
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)
    return entry


def build_network(name: str, scan_backend: str = "auto", **hyperparameters) -> nn.Module:
    """Build network `name` with `hyperparameters`; every Mamba in it uses `scan_backend`
    ("auto" or a registered backend name, resolved on the first forward per device)."""
    cls = network_class(name)
    backends.check_backend_name(scan_backend)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(hyperparameters) - set(accepted))
    if unknown:
        raise ValueError(f"{name} does not take {', '.join(unknown)}; its hyperparameters are: "
                         f"{', '.join(accepted)}")
    model = cls(**hyperparameters)
    _point_blocks(model, scan_backend)
    return model


def set_scan_backend(model: nn.Module, name: str) -> None:
    """Point every Mamba block inside `model` at scan backend `name` ("auto" or registered)."""
    backends.check_backend_name(name)
    _point_blocks(model, name)


def _point_blocks(model: nn.Module, checked_name: str) -> None:
    for module in model.modules():
        if isinstance(module, Mamba):
            module.take_checked_scan_backend(checked_name)


__all__ = ["NETWORKS", "build_network", "network_class", "network_names", "register_network",
           "set_scan_backend"]
