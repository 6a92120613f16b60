"""One training problem per task: draws an augmented batch on the device and scores the output.

Every case lives on the training device once; each sample is: spatial augmentation of the raw
image (and its labels / heatmaps) to the card's patch, then the card's intensity normalisation
(`normalize_tensor`, the same arithmetic as inference's), then intensity augmentation.

Example:
    >>> problem = make_problem(card, cases, device, seed=0)        # doctest: +SKIP
    >>> x, target = problem.batch(2)                                 # x: (2, 1, k, j, i)
    >>> loss = problem.loss(network(x), target)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from nnmamba.train import augment, losses
from nnmamba.train.data import PreparedCase, gaussian_heatmaps


def normalize_tensor(image: torch.Tensor, normalization: dict) -> torch.Tensor:
    """A model card's intensity normalisation of one image (any shape), in float32.

    zscore: (x - mean) / std over the voxels selected by `mask` ("nonzero": x != 0 unless under 1% of
    the voxels are, "all"), applied to every voxel;
    ct: clip to [lo, hi], then (x - mean) / std with the card's dataset statistics.
    """
    x = image.float()
    method = normalization["method"]
    if method == "ct":
        lo, hi = normalization["clip"]
        return (x.clamp(float(lo), float(hi)) - float(normalization["mean"])) / float(normalization["std"])
    if method != "zscore":
        raise ValueError(f"normalization method must be 'zscore' or 'ct', got {method!r}")
    selected = x.reshape(-1)
    if normalization.get("mask", "nonzero") == "nonzero":
        nonzero = x[x != 0]
        if nonzero.numel() >= 0.01 * x.numel():  # as inference: too few non-zero voxels -> all
            selected = nonzero
    selected = selected.double()
    mean, std = selected.mean(), selected.std(unbiased=False)
    return ((x - mean) / torch.clamp(std, min=1e-8)).float()


def _patch_kji(card: dict) -> tuple:
    return tuple(int(p) for p in card["input"]["patch_size"][::-1])  # card: (i, j, k)


class _Problem:
    task = ""

    def __init__(self, card: dict, cases: Sequence[PreparedCase], device: torch.device, seed: int):
        if not cases:
            raise ValueError(f"no training cases for {self.task}")
        self.card, self.cases, self.device = card, list(cases), device
        self.normalization = card["input"]["normalization"]
        self.patch = _patch_kji(card)
        self.rng = np.random.default_rng(seed)
        # Crops smaller than the volumes must reach their borders (else the periphery is never seen).
        largest = np.max([c.image.shape for c in self.cases], axis=0)
        reach = float(max(8.0, np.max((largest - np.array(self.patch)) / 2.0)))
        self.translate_voxels = reach
        self.spatial = augment.spatial_transform(self.task, self.patch, device=device, translate_voxels=reach)
        self.intensity = augment.intensity_transform()
        augment.seed_transforms(self.spatial, self.intensity, seed=seed)
        self.images = [torch.as_tensor(c.image, device=device)[None] for c in self.cases]

    def _augment(self, sample: dict) -> dict:
        sample = self.spatial(sample)
        sample = {k: (v.as_tensor() if hasattr(v, "as_tensor") else v) for k, v in sample.items()}
        sample["image"] = normalize_tensor(sample["image"], self.normalization)
        out = self.intensity({"image": sample["image"]})["image"]
        sample["image"] = out.as_tensor() if hasattr(out, "as_tensor") else out
        return sample

    def pick(self) -> int:
        return int(self.rng.integers(len(self.cases)))


class SegmentationProblem(_Problem):
    task = "segmentation"

    def __init__(self, card, cases, device, seed):
        super().__init__(card, cases, device, seed)
        self.labels = [torch.as_tensor(c.labels.astype(np.float32), device=device)[None] for c in self.cases]

    def batch(self, size: int):
        images, labels = [], []
        for _ in range(size):
            n = self.pick()
            s = self._augment({"image": self.images[n], "label": self.labels[n]})
            images.append(s["image"])
            labels.append(s["label"][0].round().long())
        return torch.stack(images), torch.stack(labels)

    def loss(self, output, target):
        return losses.dice_ce_loss(output, target)


class LandmarkProblem(_Problem):
    task = "landmarks"

    def __init__(self, card, cases, device, seed, sigma_mm: float = 4.0):
        super().__init__(card, cases, device, seed)
        self.heatmaps = []
        for c in self.cases:
            sigma = sigma_mm / float(c.geometry.spacing[0])
            maps = gaussian_heatmaps(c.image.shape, c.landmarks_ijk(), sigma)
            self.heatmaps.append(torch.as_tensor(maps, device=device, dtype=torch.float16))

    def batch(self, size: int):
        images, maps = [], []
        for _ in range(size):
            n = self.pick()
            s = self._augment({"image": self.images[n], "heatmap": self.heatmaps[n].float()})
            images.append(s["image"])
            maps.append(s["heatmap"])
        return torch.stack(images), torch.stack(maps)

    def loss(self, output, target):
        return losses.heatmap_loss(output, target)


class ClassificationProblem(_Problem):
    task = "classification"

    def __init__(self, card, cases, device, seed):
        super().__init__(card, cases, device, seed)
        names = [c["name"] for c in card["classes"]]
        self.targets = [names.index(c.modality) for c in self.cases]
        self.by_class = [[n for n, t in enumerate(self.targets) if t == k] for k in range(len(names))]
        if any(not members for members in self.by_class):
            missing = [names[k] for k, m in enumerate(self.by_class) if not m]
            raise ValueError(f"classification training needs every class; none of the cases is {missing}")

    def pick(self) -> int:
        # Balanced: first a class, then one of its cases (CT volumes are few).
        members = self.by_class[int(self.rng.integers(len(self.by_class)))]
        return members[int(self.rng.integers(len(members)))]

    def batch(self, size: int):
        images, targets = [], []
        for _ in range(size):
            n = self.pick()
            images.append(self._augment({"image": self.images[n]})["image"])
            targets.append(self.targets[n])
        return torch.stack(images), torch.as_tensor(targets, device=self.device)

    def loss(self, output, target):
        return losses.classification_loss(output, target)


def make_problem(card: dict, cases, device, seed: int, sigma_mm: float = 4.0) -> _Problem:
    task = card["task"]
    if task == "segmentation":
        return SegmentationProblem(card, cases, device, seed)
    if task == "landmarks":
        return LandmarkProblem(card, cases, device, seed, sigma_mm=sigma_mm)
    if task == "classification":
        return ClassificationProblem(card, cases, device, seed)
    raise ValueError(f"unknown task {task!r}")
