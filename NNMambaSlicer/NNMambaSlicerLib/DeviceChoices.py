"""The devices the panel offers: what the worker reports it has, or the usual ones before it says.

A worker in another Python, or on a server, has its own GPUs; listing this computer's would offer
devices the worker does not have. The worker's status reply carries `cuda_devices` (one name per
CUDA device) and `mps` once its engine is up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?|remote)$")
# Before the worker reports its devices only what every GPU machine has: offering GPU 1-3 would
# let a user pick a device that may not exist.
USUAL = (("auto", "Auto (GPU if present)"), ("cpu", "CPU"), ("cuda:0", "GPU 0 (CUDA)"))


def isDevice(text: str) -> bool:
    """True for the device names the worker takes ('auto', 'cpu', 'mps', 'cuda', 'cuda:N') and 'remote'."""
    return bool(DEVICE_PATTERN.match(str(text)))


@dataclass
class DeviceChoices:
    """(value, label) pairs for the device box, and where they came from (`source`).

    Example:
        >>> DeviceChoices.fromStatus({"cuda_devices": ["NVIDIA H200"], "mps": False}, "the local worker").items
        [('auto', 'Auto (GPU if present)'), ('cpu', 'CPU'), ('cuda:0', 'GPU 0: NVIDIA H200')]
    """

    items: list
    source: str

    @classmethod
    def usual(cls) -> "DeviceChoices":
        return cls(list(USUAL), "the usual devices (the worker has not reported its own yet)")

    @classmethod
    def fromStatus(cls, status: dict, where: str) -> "DeviceChoices":
        """From the worker's status reply; the usual list when its engine has not reported devices yet."""
        if "cuda_devices" not in status:
            return cls.usual()
        items = [USUAL[0], USUAL[1]]
        items += [(f"cuda:{index}", f"GPU {index}: {name}") for index, name in enumerate(status["cuda_devices"])]
        if status.get("mps"):
            items.append(("mps", "Apple GPU (MPS)"))
        return cls(items, f"the devices of {where}")

    def values(self) -> list:
        return [value for value, _ in self.items]
