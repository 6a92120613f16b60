"""Prepared cases (from scripts/prepare_data.py) and the per-task targets built from them.

A prepared case is one real volume on an identity-direction (LPS) grid at the model's spacing:
`image` [k, j, i] in raw intensities, plus, depending on the task, `labels` [k, j, i] or
`landmarks_lps` (n, 3). `manifest.json` beside the grids says which case is train / held-out.

Example:
    >>> cases = load_cases("data/prepared", "segmentation", "train")   # doctest: +SKIP
    >>> cases[0].image.shape, cases[0].labels.max()                    # doctest: +SKIP
    ((97, 115, 97), 11)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from nnmamba.volume import Geometry, Volume

ROLES = ("train", "heldout")


@dataclass
class PreparedCase:
    name: str
    image: np.ndarray                      # [k, j, i] float32, raw intensities
    geometry: Geometry                     # identity direction
    modality: str                          # "CT" or "MR"
    labels: Optional[np.ndarray] = None    # [k, j, i] uint8
    landmarks_lps: Optional[np.ndarray] = None  # (n, 3) mm

    def volume(self) -> Volume:
        return Volume(self.image[None].astype(np.float32), self.geometry)

    def landmarks_ijk(self) -> np.ndarray:
        """Landmarks as continuous voxel indices (i, j, k) of this grid."""
        return self.geometry.physical_to_index(self.landmarks_lps)


def read_manifest(data_dir) -> dict:
    path = Path(data_dir) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: prepare the data first with "
                                f"`python scripts/prepare_data.py --data-dir {Path(data_dir).parent}`")
    return json.loads(path.read_text())


def load_case(data_dir, grid: str, name: str, manifest: Optional[dict] = None) -> PreparedCase:
    manifest = manifest or read_manifest(data_dir)
    with np.load(Path(data_dir) / grid / f"{name}.npz") as z:
        geometry = Geometry(z["origin"], z["spacing"], np.eye(3))
        return PreparedCase(name=name, image=z["image"].astype(np.float32), geometry=geometry,
                            modality=manifest["cases"][name]["modality"],
                            labels=z["labels"] if "labels" in z else None,
                            landmarks_lps=z["landmarks_lps"] if "landmarks_lps" in z else None)


def load_cases(data_dir, task: str, role: str) -> list:
    """The prepared cases of `task` ("segmentation", "landmarks", "classification") in `role`."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    manifest = read_manifest(data_dir)
    if task not in manifest["splits"]:
        raise ValueError(f"task {task!r} is not in {data_dir}/manifest.json (has {sorted(manifest['splits'])})")
    split = manifest["splits"][task]
    return [load_case(data_dir, split["grid"], name, manifest) for name in split[role]]


def gaussian_heatmaps(shape_kji: tuple, points_ijk: np.ndarray, sigma_voxels: float) -> np.ndarray:
    """One Gaussian per point, peak 1: shape_kji, points (n, 3) as (i, j, k) -> (n, k, j, i) float32.

    Computed as a product of three 1-D Gaussians so it costs O(n * (k + j + i)) exp's plus the outer
    product.
    """
    k, j, i = (np.arange(s, dtype=np.float32) for s in shape_kji)
    out = np.empty((len(points_ijk),) + tuple(shape_kji), dtype=np.float32)
    for n, (pi, pj, pk) in enumerate(np.asarray(points_ijk, dtype=np.float32)):
        gk = np.exp(-0.5 * ((k - pk) / sigma_voxels) ** 2)
        gj = np.exp(-0.5 * ((j - pj) / sigma_voxels) ** 2)
        gi = np.exp(-0.5 * ((i - pi) / sigma_voxels) ** 2)
        out[n] = gk[:, None, None] * gj[None, :, None] * gi[None, None, :]
    return out


def resample_case(case: PreparedCase, spacing_ijk: tuple) -> PreparedCase:
    """The case on an identity-direction grid of `spacing_ijk` mm over the same extent (linear for the
    image, nearest for labels); returned unchanged when the spacing already matches."""
    if np.allclose(case.geometry.spacing, spacing_ijk):
        return case
    import SimpleITK as sitk

    spacing = np.asarray(spacing_ijk, dtype=float)
    extent = (np.array(case.image.shape[::-1]) - 1) * case.geometry.spacing
    size = [int(n) for n in np.floor(extent / spacing).astype(int) + 1]

    def resample(array, interpolator):
        image = sitk.GetImageFromArray(array)
        image.SetOrigin(case.geometry.origin.tolist())
        image.SetSpacing(case.geometry.spacing.tolist())
        out = sitk.Resample(image, size, sitk.Transform(), interpolator, case.geometry.origin.tolist(),
                            spacing.tolist(), np.eye(3).ravel().tolist(), float(array.min()))
        return sitk.GetArrayFromImage(out)

    labels = None if case.labels is None else resample(case.labels, sitk.sitkNearestNeighbor).astype(np.uint8)
    return PreparedCase(case.name, resample(case.image, sitk.sitkLinear).astype(np.float32),
                        Geometry(case.geometry.origin, spacing, np.eye(3)), case.modality, labels,
                        case.landmarks_lps)
