"""Refuse an image whose header claims more voxels than it can hold, before reading its voxels.

A NRRD header is a few lines of text: `sizes: 100000 100000 100000` costs nothing to write, and
SimpleITK would then try to allocate 4 PB and fail with an allocation error whose hint (a smaller
tile batch, the CPU) is wrong. The header is read alone (`ReadImageInformation`), its size is
turned into the bytes reading needs (the file's own pixels plus the float32 copy inference works
on), and that is compared with the memory the OS says is available.

A claim that fits in memory can still be a lie: ITK allocates the whole image before it finds
that a 1 KiB file holds no 8 GiB of voxels. Where the voxels live in the file itself, the file
must be big enough for them: raw data at least as big, compressed data (gzip, at most 1:1032)
no less than a 1/1100th.
"""

from __future__ import annotations

import math
import os
from typing import Optional, Sequence

from nnmamba.errors import InputError

FLOAT32_BYTES = 4
# deflate (gzip, the compression NRRD, NIfTI and MetaImage use) cannot shrink data below ~1/1032.
MAX_COMPRESSION_RATIO = 1100
# Formats whose voxels follow the header in the same file (unless the header names another file).
SINGLE_FILE_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha")
DETACHED_DATA_MARKERS = (b"data file:", b"datafile:", b"ElementDataFile")
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


def voxels_stored_in(path: str) -> bool:
    """Whether `path` holds its own voxels (a .nrrd, .nii(.gz) or .mha that names no data file)."""
    if not path.lower().endswith(SINGLE_FILE_SUFFIXES):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(64 << 10)
    except OSError:
        return False
    if path.lower().endswith(".mha"):
        return b"ElementDataFile = LOCAL" in head or b"ElementDataFile=LOCAL" in head
    return not any(marker in head for marker in DETACHED_DATA_MARKERS)


def check_claim_fits_file(path: str, size: Sequence[int], bytes_per_pixel: int, components: int) -> None:
    """Raise `InputError` when the file at `path` is far too small for the voxels its header claims."""
    if not voxels_stored_in(path):
        return
    claimed = math.prod(int(s) for s in size) * bytes_per_pixel * max(int(components), 1)
    file_bytes = os.path.getsize(path)
    if claimed <= file_bytes * MAX_COMPRESSION_RATIO + ALWAYS_ALLOWED_BYTES:
        return
    shown = " x ".join(str(int(s)) for s in size)
    raise InputError(f"input {path}: its header claims {shown} voxels ({claimed / 2**20:.1f} MiB), but the file "
                     f"has only {file_bytes} bytes, too few even if compressed; the file is truncated or "
                     f"its header is wrong")
