"""Intensity normalisation per model card (numpy)."""

from __future__ import annotations

import numpy as np


def normalize(array: np.ndarray, spec: dict) -> np.ndarray:
    """array: (C, Z, Y, X) float32 -> normalised copy, channel by channel.

    "zscore": per-volume mean/std over non-zero voxels (mask "nonzero", the MR default; falls back
    to all voxels when under 1% are non-zero) or over all voxels (mask "all").
    "ct": clip to the card's [lo, hi] HU window, then the training set's mean and std.
    """
    out = np.empty_like(array, dtype=np.float32)
    method = spec["method"]
    for c, channel in enumerate(array):
        if method == "ct":
            lo, hi = spec["clip"]
            out[c] = (np.clip(channel, lo, hi) - float(spec["mean"])) / float(spec["std"])
            continue
        values = channel
        if spec.get("mask", "nonzero") == "nonzero":
            mask = channel != 0
            if mask.sum() >= 0.01 * channel.size:
                values = channel[mask]
        mean = float(values.mean(dtype=np.float64))
        std = float(values.std(dtype=np.float64))
        out[c] = (channel - mean) / max(std, 1e-8)
    return out


def normalize_tensor(channels, spec: dict):
    """channels: (C, Z, Y, X) float32 torch tensor on any device -> normalised copy; `normalize`'s maths
    (statistics in float64) where the tensor lives, so a GPU run never brings the volume back."""
    import torch

    out = torch.empty_like(channels, dtype=torch.float32)
    method = spec["method"]
    for c, channel in enumerate(channels):
        if method == "ct":
            lo, hi = spec["clip"]
            out[c] = (channel.clamp(lo, hi) - float(spec["mean"])) / float(spec["std"])
            continue
        values = channel.reshape(-1)
        if spec.get("mask", "nonzero") == "nonzero":
            mask = values != 0
            if int(mask.sum()) >= 0.01 * values.numel():
                values = values[mask]
        values = values.double()
        mean = float(values.mean())
        std = float(values.std(unbiased=False))
        out[c] = (channel - mean) / max(std, 1e-8)
    return out
