"""Sliding-window inference over a volume larger than the network's patch (torch).

The volume may stay on the CPU while tiles run on the device; the stitched output lives on
`stitch_device`. Tiles are blended with a Gaussian importance map; optional mirror TTA averages
the network over flips of each tile. `cancel` is checked between tile batches.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from nnmamba.errors import Cancelled, ModelError
from nnmamba.inference.tiling import gaussian_importance, mirror_combinations, padding_for, tile_slices

# Card mirror axes are (i, j, k) of the working grid; tensors are (batch, channel, k, j, i).
AXIS_TO_DIM = {0: 4, 1: 3, 2: 2}


def forward_mirrored(network: Callable, tiles: torch.Tensor, mirror_axes: Sequence[int] = (),
                     spatial_output: bool = True, mirror_order: Optional[Sequence[int]] = None) -> torch.Tensor:
    """tiles: (B, C, Z, Y, X) -> mean of network(flip(x)) over every subset of axes, each output
    flipped back when `spatial_output` (dense maps); a (B, classes) output is averaged as is.
    `mirror_order`: the output channels' order after a left-right (i) flip, for a network trained to
    answer a mirrored head with Left and Right swapped (`ModelCard.mirror_order`)."""
    combos = mirror_combinations([AXIS_TO_DIM[a] for a in mirror_axes])
    lateral = AXIS_TO_DIM[0]
    total = None
    for dims in combos:
        x = torch.flip(tiles, dims) if dims else tiles
        y = network(x)
        y = torch.flip(y, dims) if dims and spatial_output else y
        if mirror_order is not None and lateral in dims:
            y = y[:, list(mirror_order)]
        y = y.float()
        total = y if total is None else total + y
    return total / len(combos)


def pad_volume(image: torch.Tensor, patch: Sequence[int], multiple: int = 16) -> tuple:
    """image: (C, Z, Y, X) -> (padded image, pads per axis); pads with each channel's minimum."""
    pads = padding_for(image.shape[1:], patch, multiple)
    if not any(before or after for before, after in pads):
        return image, pads
    shape = [image.shape[0]] + [n + b + a for n, (b, a) in zip(image.shape[1:], pads)]
    fill = image.reshape(image.shape[0], -1).min(dim=1).values.view(-1, 1, 1, 1)
    padded = fill.expand(*shape).clone()
    (z0, _), (y0, _), (x0, _) = pads
    padded[:, z0:z0 + image.shape[1], y0:y0 + image.shape[2], x0:x0 + image.shape[3]] = image
    return padded, pads


def tile_grid(shape: Sequence[int], patch: Sequence[int], overlap: float) -> tuple:
    """(the tile shape, the tiles as slices of the padded volume) of a (Z, Y, X) volume of `shape`.

    Axes shorter than the patch run as one tile of the axis rounded up to 16, not a full padded
    patch: the networks take any multiple of 16, and padding only adds work.
    """
    patch = tuple(min(int(p), -(-int(n) // 16) * 16) for p, n in zip(patch, shape))
    padded = [n + before + after for n, (before, after) in zip(shape, padding_for(shape, patch))]
    return patch, tile_slices(padded, patch, overlap)


def sliding_window(network: Callable, image: torch.Tensor, patch: Sequence[int], out_channels: int, *,
                   overlap: float = 0.5, tile_batch: int = 2, device=torch.device("cpu"),
                   stitch_device=torch.device("cpu"), mirror_axes: Sequence[int] = (),
                   mirror_order: Optional[Sequence[int]] = None, autocast: Optional[Callable] = None,
                   progress: Optional[Callable[[int, int], None]] = None,
                   cancel: Optional[threading.Event] = None, fixed_batch: bool = False) -> torch.Tensor:
    """image: (C, Z, Y, X) float32 (any device) -> (out_channels, Z, Y, X) float32 on stitch_device.

    `patch` is (Z, Y, X). An axis shorter than the patch is padded to a multiple of 16 and run as
    one tile along that axis; the output is cropped back, so any volume size works.
    `fixed_batch`: the last, shorter batch is filled up to `tile_batch` with copies of its last tile
    (their outputs dropped), so every forward has one shape: one CUDA graph instead of two.
    """
    patch, tiles = tile_grid(image.shape[1:], patch, overlap)
    padded, pads = pad_volume(image, patch)
    shape = padded.shape[1:]
    importance = torch.from_numpy(gaussian_importance(patch)).to(stitch_device)
    logits = torch.zeros((out_channels,) + tuple(shape), dtype=torch.float32, device=stitch_device)
    weights = torch.zeros(tuple(shape), dtype=torch.float32, device=stitch_device)
    context = autocast or _no_autocast
    done = 0
    for start in range(0, len(tiles), tile_batch):
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled by the user")
        batch_slices = tiles[start:start + tile_batch]
        run_slices = batch_slices
        if fixed_batch and len(batch_slices) < tile_batch:
            run_slices = batch_slices + [batch_slices[-1]] * (tile_batch - len(batch_slices))
        batch = torch.stack([padded[(slice(None),) + s] for s in run_slices]).to(device, non_blocking=True)
        with torch.no_grad(), context():
            predicted = forward_mirrored(network, batch, mirror_axes, mirror_order=mirror_order)[:len(batch_slices)]
        if predicted.shape[1] != out_channels or tuple(predicted.shape[2:]) != tuple(patch):
            raise ModelError(f"network returned shape {tuple(predicted.shape)}, expected "
                               f"({len(batch_slices)}, {out_channels}, {', '.join(map(str, patch))})")
        predicted = predicted.to(stitch_device)
        for s, tile in zip(batch_slices, predicted):
            logits[(slice(None),) + s] += tile * importance
            weights[s] += importance
        done += len(batch_slices)
        if progress is not None:
            progress(done, len(tiles))
    logits /= weights
    (z0, _), (y0, _), (x0, _) = pads
    z, y, x = image.shape[1:]
    return logits[:, z0:z0 + z, y0:y0 + y, x0:x0 + x]


class _no_autocast:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def center_crop_or_pad(image: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """image: (C, Z, Y, X) -> (C, *size): centred crop where larger, pad with each channel's min."""
    fill = image.reshape(image.shape[0], -1).min(dim=1).values.view(-1, 1, 1, 1)
    out = fill.expand(image.shape[0], *size).clone()
    src, dst = [], []
    for n, s in zip(image.shape[1:], size):
        if n >= s:
            a = (n - s) // 2
            src.append(slice(a, a + s))
            dst.append(slice(0, s))
        else:
            a = (s - n) // 2
            src.append(slice(0, n))
            dst.append(slice(a, a + n))
    out[(slice(None),) + tuple(dst)] = image[(slice(None),) + tuple(src)]
    return out


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()
