"""Refuse an image whose header claims more voxels than this machine can hold, before reading it.

A NRRD header is a few lines of text: `sizes: 100000 100000 100000` costs nothing to write, and
SimpleITK would then try to allocate 4 PB and fail with an allocation error whose hint (a smaller
tile batch, the CPU) is wrong. The header is read alone (`ReadImageInformation`), its size is
turned into the bytes reading needs (the file's own pixels plus the float32 copy inference works
on), and that is compared with the memory the OS says is available.
"""

from __future__ import annotations

import math
import os
from typing import Optional, Sequence

from nnmamba.errors import InputError

FLOAT32_BYTES = 4
# Never refuse below this even if the OS reports less free memory (caches, containers with odd
# accounting): small volumes always get their chance to be read.
ALWAYS_ALLOWED_BYTES = 256 << 20


def available_memory_bytes() -> Optional[int]:
    """Memory the OS can give this process now (Linux `MemAvailable`, else total RAM), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def bytes_to_read(size: Sequence[int], bytes_per_pixel: int, components: int = 1) -> int:
    """Bytes that reading an image of `size` voxels needs: its own pixels + the float32 copy.

    >>> bytes_to_read((256, 256, 100), bytes_per_pixel=2) // 2**20
    37
    """
    voxels = math.prod(int(s) for s in size)
    return voxels * (bytes_per_pixel * max(int(components), 1) + FLOAT32_BYTES)


def check_claimed_size(size: Sequence[int], bytes_per_pixel: int, components: int, source: str,
                       available: Optional[int] = None) -> None:
    """Raise `InputError` when an image of `size` (from its header) cannot fit in memory."""
    needed = bytes_to_read(size, bytes_per_pixel, components)
    available = available_memory_bytes() if available is None else available
    if available is None or needed <= max(available, ALWAYS_ALLOWED_BYTES):
        return
    shown = " x ".join(str(int(s)) for s in size)
    raise InputError(f"input {source}: its header claims {shown} voxels, which need "
                     f"{needed / 2**30:.1f} GiB to read, but only {available / 2**30:.1f} GiB of memory is "
                     f"available; the header is wrong (fix its sizes) or the volume must be cropped or "
                     f"downsampled first")
