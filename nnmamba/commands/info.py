"""`nnmamba info`: versions, devices, scan backends and which backend "auto" picks on each device."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys


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
    chosen = {}
    for d in devices:
        try:
            chosen[d["device"]] = backends.resolve_backend(backends.AUTO, d["device"])
        except (ValueError, RuntimeError) as e:
            chosen[d["device"]] = f"error: {e}"
    return {"versions": versions, "devices": devices, "backends": report_backends,
            "requested": requested, "scan_backend": chosen}


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
    if failed:
        print("a scan backend asked for through NNMAMBA_SCAN_BACKEND cannot run here", file=sys.stderr)
        return 1
    return 0
