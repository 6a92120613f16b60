"""Prepared cases (from scripts/prepare_data.py) and the per-task targets built from them.

A prepared case is one real volume on an identity-direction (LPS) grid at the model's spacing:
`image` [k, j, i] in raw intensities, plus, depending on the task, `labels` [k, j, i] or
`landmarks_lps` (n, 3). A label-map case (role `label_maps`, the generator's input) holds `codes`
[k, j, i], a FreeSurfer-coded label map, and no image. `manifest.json` beside the grids says which
case is train / held-out / a label map.

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

ROLES = ("train", "heldout", "label_maps")


@dataclass
class PreparedCase:
    name: str
    image: Optional[np.ndarray]            # [k, j, i] float32, raw intensities (None: a label map)
    geometry: Geometry                     # identity direction
    modality: str                          # "CT" or "MR" (label maps: "labels")
    labels: Optional[np.ndarray] = None    # [k, j, i] uint8
    landmarks_lps: Optional[np.ndarray] = None  # (n, 3) mm
    codes: Optional[np.ndarray] = None     # [k, j, i] int16 FreeSurfer codes (label-map cases)
    weighting: Optional[str] = None        # "T1w" / "T2w" for MR where the source says so

    @property
    def shape_kji(self) -> tuple:
        return tuple((self.image if self.image is not None else self.codes).shape)

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
        info = manifest["cases"][name]
        return PreparedCase(name=name, image=z["image"].astype(np.float32) if "image" in z else None,
                            geometry=geometry, modality=info["modality"],
                            labels=z["labels"] if "labels" in z else None,
                            landmarks_lps=z["landmarks_lps"] if "landmarks_lps" in z else None,
                            codes=z["codes"].astype(np.int16) if "codes" in z else None,
                            weighting=info.get("weighting"))


def load_cases(data_dir, task: str, role: str) -> list:
    """The prepared cases of `task` ("segmentation", "landmarks", "classification") in `role`."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    manifest = read_manifest(data_dir)
    if task not in manifest["splits"]:
        raise ValueError(f"task {task!r} is not in {data_dir}/manifest.json (has {sorted(manifest['splits'])})")
    split = manifest["splits"][task]
    return [load_case(data_dir, split["grid"], name, manifest) for name in split.get(role, [])]


def class_of_case(case: PreparedCase, names) -> int:
    """The index of a real case's scan type among a card's class names: "CT", or "<weighting> MR"
    ("T1w MR", "T2w MR") where the card tells weightings apart, else "MR"."""
    candidates = [case.modality] if case.modality == "CT" else [f"{case.weighting} MR", "MR"]
    for name in candidates:
        if name in names:
            return list(names).index(name)
    raise ValueError(f"case {case.name} ({case.modality}, weighting {case.weighting}) is none of the classes "
                     f"{list(names)}; record its weighting in the manifest or leave it out of the split")


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
    import torch

    from nnmamba.inference.device_resampling import resample_linear, resample_nearest

    spacing = np.asarray(spacing_ijk, dtype=float)
    extent = (np.array(case.shape_kji[::-1]) - 1) * case.geometry.spacing
    size = [int(n) for n in np.floor(extent / spacing).astype(int) + 1]
    target = Geometry(case.geometry.origin, spacing, np.eye(3))

    def resample(array, mode):
        # torch, not SimpleITK: training runs on GPU machines without it
        source = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
        function = resample_nearest if mode == "nearest" else resample_linear
        return function(source, case.geometry, target, size[::-1], source.reshape(-1).min()[None])[0].numpy()

    labels = None if case.labels is None else resample(case.labels, "nearest").astype(np.uint8)
    codes = None if case.codes is None else resample(case.codes, "nearest").astype(np.int16)
    image = None if case.image is None else resample(case.image, "bilinear").astype(np.float32)
    return PreparedCase(case.name, image, target, case.modality, labels,
                        case.landmarks_lps, codes, case.weighting)


def centre_padded(arrays: list, fills: list) -> tuple:
    """Arrays [k, j, i] of different shapes -> one (n, k, j, i) stack on their common (largest) grid,
    each centred and padded with its fill, and each one's offset (i, j, k) in the stack's voxels (add
    it to a point's indices). Lets a batch of different cases be one gather on the device."""
    shape = np.max([a.shape for a in arrays], axis=0)
    out = np.empty((len(arrays),) + tuple(int(s) for s in shape), dtype=arrays[0].dtype)
    offsets = np.zeros((len(arrays), 3))
    for n, (array, fill) in enumerate(zip(arrays, fills)):
        start = (shape - np.array(array.shape)) // 2
        out[n] = fill
        out[n][tuple(slice(s, s + e) for s, e in zip(start, array.shape))] = array
        offsets[n] = start[::-1]
    return out, offsets
