"""The inference policy as plain data (torch-free: the worker client sends it as a dict)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Union

from nnmamba.errors import InputError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class InferenceOptions:
    """How to run: device ("auto", "cpu", "cuda", "cuda:1", ...), mirror TTA, tile overlap,
    autocast precision, tiles per forward pass ("auto": as many as fit in the free device memory,
    at most 8, on CUDA; 2 on the CPU), and where the stitched volume lives ("auto": on the device
    when it fits in a third of free memory, else CPU)."""

    device: str = "auto"
    tta: bool = False
    overlap: float = 0.5
    precision: str = "auto"
    tile_batch: Union[int, str] = "auto"
    stitch_device: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.overlap, bool) or not isinstance(self.overlap, (int, float)) \
                or not 0 <= self.overlap < 1:
            raise InputError(f"overlap must be >= 0 and < 1, got {self.overlap}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.tile_batch != "auto" and (isinstance(self.tile_batch, bool)
                                          or not isinstance(self.tile_batch, int) or self.tile_batch < 1):
            raise InputError(f"tile_batch must be 'auto' or an integer >= 1, got {self.tile_batch!r}")
        if not isinstance(self.tta, bool):
            raise InputError(f"tta must be true or false, got {self.tta!r}")
        for name in ("device", "stitch_device"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InputError(f"{name} must be a device name such as 'auto', 'cpu' or 'cuda', got {value!r}")

    @classmethod
    def from_dict(cls, d: dict | None) -> "InferenceOptions":
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown inference option(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)
