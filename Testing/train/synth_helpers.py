"""Label maps with small spherical blobs at known centres, for the generator's alignment tests."""

from __future__ import annotations

import torch

# (FreeSurfer code, centre (i, j, k)) on a 48^3 grid; codes chosen so that flips swap some of them.
BLOBS = [(17, (14.0, 20.0, 22.0)), (53, (33.0, 21.0, 23.0)), (10, (18.0, 30.0, 16.0)),
         (16, (24.0, 14.0, 30.0)), (12, (30.0, 32.0, 30.0))]
GRID = (48, 48, 48)
RADIUS = 3.0


def blob_map(batch: int = 2, blobs=BLOBS, grid=GRID, radius: float = RADIUS) -> torch.Tensor:
    """(batch, 1, k, j, i) long: 0 background, each blob a sphere of its code."""
    k, j, i = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in grid], indexing="ij")
    out = torch.zeros(grid, dtype=torch.long)
    for code, (ci, cj, ck) in blobs:
        out[(i - ci) ** 2 + (j - cj) ** 2 + (k - ck) ** 2 <= radius ** 2] = code
    return out[None, None].repeat(batch, 1, 1, 1, 1)


def blob_points(batch: int = 2, blobs=BLOBS) -> torch.Tensor:
    return torch.tensor([c for _, c in blobs], dtype=torch.float32)[None].repeat(batch, 1, 1)


def centroid(mask: torch.Tensor) -> torch.Tensor:
    """mask (k, j, i) bool -> centroid (i, j, k)."""
    k, j, i = torch.nonzero(mask, as_tuple=True)
    return torch.stack([i.float().mean(), j.float().mean(), k.float().mean()])
