"""Training checkpoints as safetensors (never pickle): model + optimiser tensors, and a JSON beside
them with the step, elapsed time and the optimiser's scalar settings.

    save_checkpoint(folder, model, optimizer, {"step": 100, "elapsed_s": 12.5})
    state = load_checkpoint(folder, model, optimizer)      # -> {"step": 100, ...}

A weights-only checkpoint (`save_weights_checkpoint`: the model and the JSON, no optimiser moments;
a third of the size) is what a run carries between machines and what the repository keeps
(`training_state/<model>/`): `load_checkpoint` resumes from it with fresh optimiser moments
(`state["optimizer_restored"]` is False), and the trainer warms the learning rate up again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file

CHECKPOINT = "checkpoint.safetensors"
STATE = "checkpoint.json"
OWN_PREFIXES = ("model.", "optim.")   # the model's and optimiser's tensors; anything else is extra run state


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def _cpu_copy(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to("cpu", copy=True).contiguous()


def _write(folder: Path, tensors: dict, record: dict) -> Path:
    """folder/checkpoint.safetensors + checkpoint.json, each written to a temporary name, then renamed."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (CHECKPOINT + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, folder / CHECKPOINT)
    tmp = folder / (STATE + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, folder / STATE)
    return folder / CHECKPOINT


def save_checkpoint(folder, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict,
                    extra_tensors: Optional[dict] = None) -> Path:
    """Write folder/checkpoint.safetensors + checkpoint.json atomically (temp file, then rename).
    `extra_tensors`: more of the run's state (e.g. "average.*", the weight average), kept beside the
    model and optimiser in the same file; `load_checkpoint` hands them back as record["extra_tensors"]."""
    tensors = {f"model.{k}": _cpu_copy(v) for k, v in _unwrap(model).state_dict().items()}
    for key, value in (extra_tensors or {}).items():
        if key.startswith(OWN_PREFIXES):
            raise ValueError(f"extra checkpoint tensor {key!r} would clash with the model's or optimiser's")
        tensors[key] = _cpu_copy(value)
    optimizer_state = optimizer.state_dict()
    scalars = {}
    for index, values in optimizer_state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = _cpu_copy(value)
            else:
                scalars[f"{index}.{key}"] = value
    record = dict(state, param_groups=optimizer_state["param_groups"], optimizer_scalars=scalars)
    return _write(Path(folder), tensors, record)


def save_weights_checkpoint(folder, model: torch.nn.Module, state: dict) -> Path:
    """Write folder/checkpoint.safetensors (model tensors only, floats as fp32) + checkpoint.json atomically."""
    tensors = {f"model.{k}": _cpu_copy(v.float() if v.is_floating_point() else v)
               for k, v in _unwrap(model).state_dict().items()}
    return _write(Path(folder), tensors, dict(state, weights_only=True))


def model_tensors(tensors: dict) -> dict:
    """A checkpoint's model tensors under the network's own names (`model.` prefix dropped); a plain
    weights file's tensors as they are."""
    if not any(k.startswith("model.") for k in tensors):
        return tensors
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}


def has_checkpoint(folder) -> bool:
    return (Path(folder) / CHECKPOINT).is_file() and (Path(folder) / STATE).is_file()


def load_checkpoint(folder, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore model + optimiser in place from `folder`; returns the saved state (step, ...)."""
    folder = Path(folder)
    if not has_checkpoint(folder):
        raise FileNotFoundError(f"no checkpoint in {folder} (expected {CHECKPOINT} and {STATE}); "
                                f"start without --resume")
    record = json.loads((folder / STATE).read_text())
    tensors = load_file(str(folder / CHECKPOINT), device="cpu")
    _unwrap(model).load_state_dict(model_tensors(tensors), strict=True)
    if record.pop("weights_only", False):
        record["optimizer_restored"] = False
        return record
    per_param: dict = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            per_param.setdefault(int(index), {})[name] = value
    for key, value in record.pop("optimizer_scalars").items():
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": per_param, "param_groups": record.pop("param_groups")})
    record["optimizer_restored"] = True
    record["extra_tensors"] = {k: v for k, v in tensors.items() if not k.startswith(OWN_PREFIXES)}
    return record
