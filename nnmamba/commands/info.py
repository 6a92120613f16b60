"""`nnmamba info`: versions, devices, scan backends, and the inference and training execution plans of
the default network on each visible device (what "auto" picks there, and why)."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import platform
import sys

# the network whose plans are shown: upstream nnMambaSeg's published configuration
DEFAULT_NETWORK = {"network": "nnMambaSeg",
                   "hyperparameters": {"in_ch": 1, "channels": 32, "blocks": 3, "number_classes": 6}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def collect() -> dict:
    """Everything `nnmamba info` reports, as plain data."""
    import torch

    from nnmamba.ssm import backends

    versions = {"python": platform.python_version(), "nnmamba": _version("nnmamba"),
                "torch": torch.__version__, "numpy": _version("numpy"),
                "SimpleITK": _version("SimpleITK"), "mamba-ssm": _version("mamba-ssm"),
                "causal-conv1d": _version("causal-conv1d")}
    devices = [{"device": "cpu", "name": platform.processor() or platform.machine(),
                "threads": torch.get_num_threads()}]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append({"device": f"cuda:{index}", "name": props.name,
                            "memory_gib": round(props.total_memory / 2 ** 30, 1)})
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append({"device": "mps", "name": "Apple Metal"})
    requested = os.environ.get(backends.ENV_VAR, "").strip() or backends.AUTO
    report_backends = []
    for name in backends.backend_names():
        backend = backends.get_backend(name)
        report_backends.append({"name": name, "per_device": {
            d["device"]: backend.reason(d["device"]) for d in devices}})
    plans = {d["device"]: _plans(d["device"]) for d in devices}
    chosen = {device: p["inference"].get("scan_backend", f"error: {p['inference'].get('error')}")
              for device, p in plans.items()}
    return {"versions": versions, "devices": devices, "backends": report_backends,
            "requested": requested, "scan_backend": chosen, "plans": plans, "kernel_cache": kernel_cache()}


def kernel_cache() -> dict:
    """Where the commands that run networks keep compiled Triton kernels, and how many are there."""
    from nnmamba.kernel_cache import triton_cache_dir

    location = triton_cache_dir()
    # Triton keeps one sub-folder per compiled kernel variant
    entries = sum(1 for p in location.path.iterdir() if p.is_dir()) if location.path.is_dir() else 0
    return {"path": str(location.path), "source": location.source, "kernels": entries}


def _plans(device: str) -> dict:
    """{"inference": plan dict | {"error"}, "training": ...} for the default network on `device`,
    in the dtype the predictor and the trainer use there by default (bf16 on CUDA, else float32)."""
    import torch

    from nnmamba.execution_plan import make_plan

    cuda_bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
    dtype = torch.bfloat16 if cuda_bf16 else torch.float32
    plans = {}
    planner_log = logging.getLogger("nnmamba.execution_plan")
    level = planner_log.level
    planner_log.setLevel(logging.WARNING)  # the report prints the plans; logging them too says it twice
    try:
        for mode in ("inference", "training"):
            try:
                plans[mode] = make_plan(DEFAULT_NETWORK, device, dtype, mode).as_dict()
            except (ValueError, RuntimeError) as e:
                plans[mode] = {"error": str(e)}
    finally:
        planner_log.setLevel(level)
    return plans


def _print_plan(device: str, mode: str, plan: dict) -> None:
    if "error" in plan:
        print(f"  {device} {mode}: cannot run: {plan['error']}")
        return
    print(f"  {device} {mode} ({plan['dtype']}):")
    from nnmamba.execution_plan import format_decision

    for decision, why in plan["reasons"]:
        print("    " + format_decision(decision, plan[decision], why))


def run(args: argparse.Namespace) -> int:
    report = collect()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("versions:")
    for key, value in report["versions"].items():
        print(f"  {key:14s} {value}")
    print("devices:")
    for d in report["devices"]:
        extra = f", {d['threads']} threads" if "threads" in d else ""
        extra += f", {d['memory_gib']} GiB" if "memory_gib" in d else ""
        print(f"  {d['device']:8s} {d['name']}{extra}")
    print("scan backends (available per device):")
    for b in report["backends"]:
        for device, reason in b["per_device"].items():
            mark = "yes" if reason == "available" else f"no  ({reason})"
            print(f"  {b['name']:10s} {device:8s} {mark}")
    source = "auto" if report["requested"] == "auto" else f"{report['requested']} (from NNMAMBA_SCAN_BACKEND)"
    print(f"scan backend that will be used (asked for: {source}):")
    failed = False
    for device, name in report["scan_backend"].items():
        print(f"  {device:8s} {name}")
        failed = failed or name.startswith("error:")
    cache = report["kernel_cache"]
    print(f"kernel cache (Triton, from {cache['source']}):\n  {cache['path']}  "
          f"({cache['kernels']} compiled kernel{'s' if cache['kernels'] != 1 else ''})")
    print(f"execution plans of {DEFAULT_NETWORK['network']} (channels 32, blocks 3, 6 classes):")
    for device, plans in report["plans"].items():
        for mode, plan in plans.items():
            _print_plan(device, mode, plan)
            failed = failed or "error" in plan
    if failed:
        print("a scan backend asked for through NNMAMBA_SCAN_BACKEND cannot run here", file=sys.stderr)
        return 1
    return 0
