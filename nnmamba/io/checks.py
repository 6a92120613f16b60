"""Checks a `Volume` must pass before inference (numpy only: the worker runs them on arrays too).

Every failure raises `InputError` saying what was found, what was expected and how to fix it.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from nnmamba.errors import InputError
from nnmamba.volume import Volume

MIN_SPACING_MM = 1e-3
MAX_SPACING_MM = 100.0
MIN_VOXELS_PER_AXIS = 2


def check_geometry(geometry, source: str = "volume") -> None:
    spacing = np.asarray(geometry.spacing, dtype=np.float64)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(f"{source}: voxel spacing must be positive, got {spacing.tolist()} mm; "
                         f"fix the image header (spacing) and try again")
    if np.any(spacing < MIN_SPACING_MM) or np.any(spacing > MAX_SPACING_MM):
        raise InputError(f"{source}: voxel spacing {spacing.tolist()} mm is outside the plausible range "
                         f"{MIN_SPACING_MM}..{MAX_SPACING_MM} mm (is the header in metres or microns?); "
                         f"fix the image header")
    if not np.all(np.isfinite(geometry.origin)):
        raise InputError(f"{source}: origin {np.asarray(geometry.origin).tolist()} is not finite")
    direction = np.asarray(geometry.direction, dtype=np.float64)
    if not np.all(np.isfinite(direction)) or abs(abs(np.linalg.det(direction)) - 1.0) > 1e-3:
        raise InputError(f"{source}: direction matrix {direction.tolist()} is not a rotation "
                         f"(|det| must be 1); fix the image header")


def check_channels(volume: Volume, expected_channels: int, source: str = "volume") -> None:
    """Raise `InputError` unless `volume` has the model's number of channels (no pass over the voxels)."""
    if volume.channels != expected_channels:
        raise InputError(f"{source}: the model expects {expected_channels} input channel(s), got "
                         f"{volume.channels}; give one file per channel in the order of the model card")


def check_volume(volume: Volume, expected_channels: Optional[int] = None, source: str = "volume") -> None:
    """Raise `InputError` unless `volume` is a finite, non-constant 3-D (multi-channel) image."""
    array = volume.array
    if not isinstance(array, np.ndarray):
        raise InputError(f"{source}: voxels must be a numpy array, got {type(array).__name__}")
    if array.ndim not in (3, 4):
        raise InputError(f"{source}: expected a 3-D volume (k, j, i) or channels-first (c, k, j, i), "
                         f"got an array of shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) and not np.issubdtype(array.dtype, np.complexfloating)):
        raise InputError(f"{source}: voxels must be real numbers, got dtype {array.dtype}")
    shape = array.shape[-3:]
    if array.size == 0:
        raise InputError(f"{source}: the volume is empty (shape {array.shape})")
    if min(shape) < MIN_VOXELS_PER_AXIS:
        raise InputError(f"{source}: a 3-D volume needs at least {MIN_VOXELS_PER_AXIS} voxels along each "
                         f"axis, got {tuple(reversed(shape))} (i, j, k): this looks like a 2-D image; "
                         f"give a 3-D volume")
    if expected_channels is not None:
        check_channels(volume, expected_channels, source)
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array)
        if bad.any():
            raise InputError(f"{source}: {int(bad.sum())} voxels are NaN or infinite; "
                             f"replace them (e.g. with 0) before running")
    stack = array.reshape((1,) + array.shape) if array.ndim == 3 else array
    for c, channel in enumerate(stack):
        lo, hi = channel.min(), channel.max()
        if lo == hi:
            which = f"channel {c}" if stack.shape[0] > 1 else "the volume"
            raise InputError(f"{source}: {which} is constant (every voxel is {lo}); "
                             f"there is nothing to segment or detect")
    check_geometry(volume.geometry, source)
