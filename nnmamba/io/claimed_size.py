"""Refuse an image whose header claims more voxels than it can hold, before reading its voxels.

A NRRD header is a few lines of text: `sizes: 100000 100000 100000` costs nothing to write, and
SimpleITK would then try to allocate 4 PB and fail with an allocation error whose hint (a smaller
tile batch, the CPU) is wrong. The header is read alone (`ReadImageInformation`), its size is
turned into the bytes reading needs (the file's own pixels plus the float32 copy inference works
on), and that is compared with the memory the OS says is available.

A claim that fits in memory can still be a lie: ITK allocates the whole image before it finds
that a 1 KiB file holds no 8 GiB of voxels. So the files that hold the voxels (the image file
itself, or the data file its header names) must be big enough for them: raw data at least as big,
compressed data (gzip, at most 1:1032) no less than a 1/1100th.
"""

from __future__ import annotations

import math
import os
from typing import Optional, Sequence

from nnmamba.errors import InputError

FLOAT32_BYTES = 4
# deflate (gzip, the compression NRRD, NIfTI and MetaImage use) cannot shrink data below ~1/1032.
MAX_COMPRESSION_RATIO = 1100

# Never refuse below this even if the OS reports less free memory (caches, containers with odd
# accounting): small volumes always get their chance to be read.
ALWAYS_ALLOWED_BYTES = 256 << 20


def available_memory_bytes() -> Optional[int]:
    """Memory this process can still get: the least of the OS's `MemAvailable`, the room left
    under its address-space limit (`ulimit -v`) and under its cgroup's memory limit (a
    container's); total RAM where none of these can be read; None when nothing can."""
    candidates = [_meminfo_available(), _address_space_left(), _cgroup_memory_left()]
    known = [c for c in candidates if c is not None]
    if known:
        return min(known)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def _meminfo_available() -> Optional[int]:
    return _kib_field("/proc/meminfo", "MemAvailable:")


def _kib_field(path: str, key: str) -> Optional[int]:
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _address_space_left() -> Optional[int]:
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, OSError, ValueError):
        return None
    if limit == resource.RLIM_INFINITY:
        return None
    used = _kib_field("/proc/self/status", "VmSize:") or 0
    return max(limit - used, 0)


def _cgroup_memory_left() -> Optional[int]:
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as f:
            return max(int(limit) - int(f.read().strip()), 0)
    except (OSError, ValueError):
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


def data_files(path: str) -> Optional[list]:
    """The files that hold the voxels of the image at `path`, from its header; None when the
    header does not say plainly (a list or pattern of files, an unknown format)."""
    lower = path.lower()
    folder = os.path.dirname(path)
    if lower.endswith((".nii", ".nii.gz")):
        return [path]
    if lower.endswith(".hdr"):
        return [p for p in (path[:-4] + ".img", path[:-4] + ".img.gz") if os.path.exists(p)] or [path[:-4] + ".img"]
    if not lower.endswith((".nrrd", ".nhdr", ".mha", ".mhd")):
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(64 << 10)
    except OSError:
        return None
    if lower.endswith((".nrrd", ".nhdr")):
        named = _header_value(head.split(b"\n\n")[0], (b"data file:", b"datafile:"))
        if named is None:
            return [path]
    else:
        named = _header_value(head, (b"ElementDataFile =", b"ElementDataFile="))
        if named in (None, "LOCAL"):
            return [path]
    if named == "LIST" or "%" in named or " " in named:
        return None
    return [named if os.path.isabs(named) else os.path.join(folder, named)]


def _header_value(head: bytes, keys: tuple) -> Optional[str]:
    for line in head.splitlines():
        for key in keys:
            if line.startswith(key):
                return line[len(key):].strip().decode("utf-8", "replace")
    return None


def check_claim_fits_file(path: str, size: Sequence[int], bytes_per_pixel: int, components: int) -> None:
    """Raise `InputError` when the files holding the image's voxels are far too small for the
    voxels its header claims (raw data at least as big, gzip at its best ratio)."""
    files = data_files(path)
    if files is None:
        return
    claimed = math.prod(int(s) for s in size) * bytes_per_pixel * max(int(components), 1)
    stored = sum(os.path.getsize(f) for f in files if os.path.isfile(f))
    if claimed <= stored * MAX_COMPRESSION_RATIO + ALWAYS_ALLOWED_BYTES:
        return
    shown = " x ".join(str(int(s)) for s in size)
    where = "the file has" if files == [path] else f"its data file(s) {', '.join(files)} have"
    raise InputError(f"input {path}: its header claims {shown} voxels ({claimed / 2**20:.1f} MiB), but {where} "
                     f"only {stored} bytes, too few even if compressed; the file is truncated or its header "
                     f"is wrong")
