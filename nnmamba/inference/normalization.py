"""Intensity normalisation per model card: one implementation for training and inference.

Training (`nnmamba.train.problems`) and the Predictor call the same `normalize_batch`, so a network
sees the same numbers from a generated training patch with augmentation off as from a user's volume.

Methods (the card's `input.normalization.method`):
- "percentile" (our trained models): the `lower` / `upper` percentiles (default 0.5 / 99.5) of the
  voxels inside the scan's field of view map to 0 / 1, values beyond are clipped, and every voxel
  outside the field of view is 0 - the normalised background. Noise, bias or padding outside the
  scanned region therefore never reaches the network, in training or at inference.
- "zscore": mean / std over non-zero voxels (mask "nonzero"; all voxels when under 1 % are non-zero)
  or over all voxels (mask "all"); kept for upstream-style cards.
- "ct": clip to the card's [lo, hi] HU window, then the card's dataset mean and std.

Example:
    >>> x = torch.rand(2, 1, 8, 8, 8) * 100
    >>> y = normalize_batch(x, {"method": "percentile"})
    >>> float(y.min()), float(y.max())
    (0.0, 1.0)
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

METHODS = ("percentile", "zscore", "ct")
# Percentiles are read from at most this many evenly strided voxels per sample: exact enough (a
# head at 2 mm has ~1M voxels) and within torch.quantile's input limit for any volume.
PERCENTILE_SAMPLES = 1 << 20


def normalize_batch(images: torch.Tensor, spec: dict, inside: Optional[torch.Tensor] = None) -> torch.Tensor:
    """images: (B, ...) raw intensities, one sample per row; inside: optional bool mask of the same
    shape (True inside the scan's field of view; None: everywhere) -> float32 normalised copy."""
    x = images.float()
    method = spec["method"]
    if method == "ct":
        lo, hi = spec["clip"]
        return (x.clamp(float(lo), float(hi)) - float(spec["mean"])) / float(spec["std"])
    if method == "zscore":
        return _zscore(x, spec)
    if method == "percentile":
        return _percentile(x, spec, inside)
    raise ValueError(f"normalization method must be one of {METHODS}, got {method!r}")


def _zscore(x: torch.Tensor, spec: dict) -> torch.Tensor:
    flat = x.reshape(x.shape[0], -1).double()
    selected = torch.ones_like(flat, dtype=torch.bool)
    if spec.get("mask", "nonzero") == "nonzero":
        nonzero = flat != 0
        enough = nonzero.sum(1, keepdim=True) >= 0.01 * flat.shape[1]   # too few non-zero -> all voxels
        selected = torch.where(enough, nonzero, selected)
    count = selected.sum(1, keepdim=True)
    mean = torch.where(selected, flat, 0).sum(1, keepdim=True) / count
    var = torch.where(selected, (flat - mean) ** 2, 0).sum(1, keepdim=True) / count
    std = var.sqrt().clamp_min(1e-8)
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    return ((x - mean.float().view(shape)) / std.float().view(shape)).float()


def percentile_bounds(x: torch.Tensor, inside: Optional[torch.Tensor], lower: float, upper: float) -> torch.Tensor:
    """x: (B, ...) -> (B, 2) the lower / upper percentiles of each sample's voxels inside its field of
    view (from an even stride of at most PERCENTILE_SAMPLES voxels; NaN where a sample has none)."""
    flat = x.reshape(x.shape[0], -1).float()
    if inside is not None:
        flat = torch.where(inside.reshape(x.shape[0], -1), flat, float("nan"))
    stride = max(1, -(-flat.shape[1] // PERCENTILE_SAMPLES))
    return nan_quantiles(flat[:, ::stride], (lower / 100.0, upper / 100.0))


def nan_quantiles(samples: torch.Tensor, quantiles: tuple) -> torch.Tensor:
    """samples (B, n), NaN where absent -> (B, len(quantiles)): torch.nanquantile's linear
    interpolation between order statistics, bit for bit (NaN where a row has no values).

    Written out because nanquantile takes several quantiles only as a tensor on the samples' device,
    and building that tensor from host numbers (`torch.tensor(..., device="cuda")`) is a copy from
    pageable memory that waits for the device: once per training batch. Here the quantiles stay
    Python numbers. Each reads only the tail it lies in (top-k of ~min(q, 1 - q) n + 2 values, not a
    sort of the row): the 0.5 % tails of a 64^3 patch cost a tenth of the sort on the CPU.
    """
    absent = samples.isnan()
    last = (~absent).sum(1, keepdim=True) - 1                               # the last valid rank
    width = samples.shape[1]
    columns = []
    for q in quantiles:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantiles must be in [0, 1], got {q}")
        rank = (last * q).clamp_min(0)
        ranks = (rank.long(), rank.ceil().long())
        lower_tail = q <= 0.5
        # a rank is at most q (n - 1) + 1 from its end of the row: k covers it for every count of values
        k = min(width, math.ceil(min(q, 1.0 - q) * (width - 1)) + 2)
        padded = torch.where(absent, float("inf") if lower_tail else float("-inf"), samples)
        tail = padded.topk(k, dim=1, largest=not lower_tail).values        # sorted away from the end
        if not lower_tail:
            ranks = tuple((last - r).clamp_min(0) for r in ranks)
        below, above = (tail.gather(1, r) for r in ranks)
        columns.append(torch.where(last < 0, float("nan"), below.lerp(above, rank - rank.long())))
    return torch.cat(columns, 1)


def _percentile(x: torch.Tensor, spec: dict, inside: Optional[torch.Tensor]) -> torch.Tensor:
    lower, upper = float(spec.get("lower", 0.5)), float(spec.get("upper", 99.5))
    bounds = percentile_bounds(x, inside, lower, upper)
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    lo = torch.nan_to_num(bounds[:, 0], nan=0.0).view(shape)
    span = torch.nan_to_num(bounds[:, 1] - bounds[:, 0], nan=1.0).clamp_min(1e-6).view(shape)
    out = ((x.clamp_min(lo) - lo) / span).clamp_max(1.0)
    if inside is not None:
        out = torch.where(inside, out, torch.zeros_like(out))
    return out


def normalize_tensor(channels: torch.Tensor, spec: dict, inside: Optional[torch.Tensor] = None) -> torch.Tensor:
    """channels: (C, Z, Y, X) float tensor on any device, inside: optional (Z, Y, X) bool -> the card's
    normalisation of each channel on its own, where the tensor lives."""
    mask = None if inside is None else inside[None].expand_as(channels)
    return normalize_batch(channels, spec, mask)


def normalize(array: np.ndarray, spec: dict, inside: Optional[np.ndarray] = None) -> np.ndarray:
    """array: (C, Z, Y, X) numpy -> normalised float32 copy (`normalize_tensor` on the CPU)."""
    mask = None if inside is None else torch.from_numpy(np.asarray(inside, dtype=bool))
    return normalize_tensor(torch.from_numpy(np.asarray(array, dtype=np.float32)), spec, mask).numpy()
