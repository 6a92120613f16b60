"""A volume as it crosses every boundary of the project: voxels + exact geometry.

numpy only (no torch, no SimpleITK) so the worker client and the Slicer module can use it.

Conventions (shared by SimpleITK's and Slicer's array views):
- `array` is indexed [k, j, i] (slowest axis first), or [c, k, j, i] with channels first;
- geometry is ITK's physical space (LPS): `origin` is the centre of voxel (0, 0, 0), `spacing`
  is (i, j, k) in mm, `direction` is 3x3 with column n the unit direction of index axis n.

Example:
    >>> g = Geometry.identity(spacing=(0.5, 0.5, 2.0))
    >>> g.index_to_physical((2, 0, 1)).tolist()   # (i, j, k) -> LPS mm
    [1.0, 0.0, 2.0]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class Geometry:
    origin: np.ndarray
    spacing: np.ndarray
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        object.__setattr__(self, "origin", np.asarray(self.origin, dtype=np.float64).reshape(3))
        object.__setattr__(self, "spacing", np.asarray(self.spacing, dtype=np.float64).reshape(3))
        object.__setattr__(self, "direction", np.asarray(self.direction, dtype=np.float64).reshape(3, 3))

    @classmethod
    def identity(cls, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                 origin: Sequence[float] = (0.0, 0.0, 0.0)) -> "Geometry":
        return cls(np.asarray(origin), np.asarray(spacing), np.eye(3))

    def index_to_physical_matrix(self) -> np.ndarray:
        """4x4 matrix mapping homogeneous (i, j, k, 1) to LPS (x, y, z, 1)."""
        m = np.eye(4)
        m[:3, :3] = self.direction @ np.diag(self.spacing)
        m[:3, 3] = self.origin
        return m

    def ijk_to_ras_matrix(self) -> np.ndarray:
        """4x4 IJK-to-RAS matrix, as Slicer's vtkMRMLVolumeNode.GetIJKToRASMatrix gives it."""
        flip = np.eye(4)
        flip[:3, :3] = LPS_TO_RAS
        return flip @ self.index_to_physical_matrix()

    @classmethod
    def from_ijk_to_ras_matrix(cls, ijk_to_ras: np.ndarray) -> "Geometry":
        flip = np.eye(4)
        flip[:3, :3] = LPS_TO_RAS
        m = flip @ np.asarray(ijk_to_ras, dtype=np.float64).reshape(4, 4)
        spacing = np.linalg.norm(m[:3, :3], axis=0)
        if np.any(spacing <= 0):
            raise ValueError(f"IJK-to-RAS matrix has a zero-length axis: spacing {spacing.tolist()}")
        return cls(m[:3, 3].copy(), spacing, m[:3, :3] / spacing)

    def index_to_physical(self, ijk: Sequence[float]) -> np.ndarray:
        """Continuous index (i, j, k), or an (n, 3) array of them, to LPS points."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ (self.direction @ np.diag(self.spacing)).T + self.origin

    def physical_to_index(self, lps: Sequence[float]) -> np.ndarray:
        """LPS point(s) to continuous index (i, j, k)."""
        lps = np.asarray(lps, dtype=np.float64)
        inverse = np.linalg.inv(self.direction @ np.diag(self.spacing))
        return (lps - self.origin) @ inverse.T

    def to_dict(self) -> dict:
        return {"origin": self.origin.tolist(), "spacing": self.spacing.tolist(),
                "direction": self.direction.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Geometry":
        return cls(np.asarray(d["origin"]), np.asarray(d["spacing"]), np.asarray(d["direction"]))


@dataclass
class Volume:
    """Voxels [c, k, j, i] (channels first, c >= 1) and their geometry."""

    array: np.ndarray
    geometry: Geometry

    @property
    def shape_kji(self) -> tuple:
        return tuple(self.array.shape[-3:])

    @property
    def channels(self) -> int:
        return 1 if self.array.ndim == 3 else self.array.shape[0]
