"""Training batches generated on the device: label maps -> images of any MR contrast or CT
(`LabelMapGenerator`, the SynthSeg recipe), and the same spatial + acquisition changes for real
images (`ImageAugmenter`). Labels and landmark points move with the image under every transform.

One call makes a whole batch with a handful of batched tensor ops (no per-sample Python loop, no
host round trip), seeded by the caller's torch.Generator, on CPU or CUDA.

Order (SynthSeg's): spatial map of the label map (nearest) -> per-label Gaussians -> resolution /
slice thickness -> bias field (MR) -> noise -> gamma (MR) -> optional zero background (MR).

Example:
    >>> maps = torch.zeros(1, 1, 40, 40, 40, dtype=torch.long); maps[..., 15:25, 15:25, 10:18] = 17
    >>> maps[..., 15:25, 15:25, 22:30] = 53
    >>> gen = LabelMapGenerator(maps, target_codes=[17, 53], out_shape=(32, 32, 32), config=SynthConfig())
    >>> batch = gen(torch.tensor([0, 0]), torch.Generator().manual_seed(0))
    >>> batch.image.shape, batch.labels.shape
    (torch.Size([2, 1, 32, 32, 32]), torch.Size([2, 32, 32, 32]))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from nnmamba.inference.normalization import nan_quantiles
from nnmamba.train.synth import acquisition
from nnmamba.train.synth.constants import constant
from nnmamba.train.synth.intensity import CONTRASTS, render_labels, sample_label_parameters
from nnmamba.train.synth.labels import (EXTRACEREBRAL_CSF, SCALP, SCALP_FAT, SKULL, TISSUES, generation_code,
                                        mirrored_code, point_permutation, tissue_of)
from nnmamba.train.synth.spatial import SpatialConfig, SpatialTransform, map_points, random_spatial, warp
from nnmamba.train.synth.ventricles import (CEREBRAL_WHITE_MATTER, LATERAL_VENTRICLES, grow_ventricles,
                                            random_growth_steps)

IGNORE_INDEX = 255
OUTSIDE_BRAIN = (0, EXTRACEREBRAL_CSF, SKULL, SCALP_FAT, SCALP)   # what brain extraction removes


@dataclass
class SynthConfig:
    spatial: SpatialConfig = field(default_factory=SpatialConfig)
    # probabilities of CONTRASTS ("any", "t1w", "t2w", "ct") per generated sample
    contrast_probabilities: Sequence[float] = (1.0, 0.0, 0.0, 0.0)
    voxel_mm: float = 2.0                    # the working grid's voxel (isotropic)
    resolution_probability: float = 0.75
    resolution_max_mm: float = 4.0
    thick_slice_max_mm: float = 8.0
    bias_std: float = 0.7                    # MR only: CT has no coil bias
    gamma_std: float = 0.4                   # MR only: CT's Hounsfield scale is physical
    noise_std_mr: float = 10.0               # intensity units of the MR priors (0-255)
    noise_std_ct: float = 25.0               # HU
    # real MR: noise std up to this share of the scan's 0.5-99.5 percentile range (clinical MR has an
    # SNR of about 10-40: noise 2.5-10 % of the tissue signal)
    noise_fraction_real_mr: float = 0.08
    zero_background_probability: float = 0.3  # MR: skull-stripped / masked scans read 0 outside
    # a scan's field of view often stops short of the head (neck, vertex, a slab): with this probability
    # each side of the patch loses up to `fov_cut_max` of its length to "not scanned"
    fov_cut_probability: float = 0.3
    fov_cut_max: float = 0.2
    # label maps only: the lateral ventricles grow by up to this much into the white matter
    # (ventricles.py: older patients' are 2-4 times the training maps')
    ventricle_growth_probability: float = 0.0
    ventricle_growth_max_mm: float = 4.0
    # label maps only: a brain-extracted scan (MR or CT: atlases, research pipelines) reads 0 everywhere
    # outside the brain, the extracerebral CSF, skull and scalp included
    brain_extraction_probability: float = 0.0

    def __post_init__(self) -> None:
        if len(self.contrast_probabilities) != len(CONTRASTS) or min(self.contrast_probabilities) < 0 \
                or sum(self.contrast_probabilities) <= 0:
            raise ValueError(f"contrast_probabilities must be {len(CONTRASTS)} non-negative weights for "
                             f"{CONTRASTS}, got {tuple(self.contrast_probabilities)}")
        if self.voxel_mm <= 0:
            raise ValueError(f"voxel_mm must be > 0, got {self.voxel_mm}")


@dataclass
class SynthBatch:
    image: torch.Tensor                     # (B, 1, k, j, i) float32, raw units (MR 0-255ish, CT HU)
    labels: Optional[torch.Tensor]          # (B, k, j, i) long training classes (IGNORE_INDEX: unknown)
    points: Optional[torch.Tensor]          # (B, N, 3) (i, j, k) in the output patch
    contrast: torch.Tensor                  # (B,) index into CONTRASTS (real images: their own)
    flipped: torch.Tensor                   # (B,) bool
    inside: Optional[torch.Tensor] = None   # (B, 1, k, j, i) bool: inside the scan's field of view
    transform: Optional[SpatialTransform] = None   # the map the batch was drawn through (moves points later)


def _draw_contrasts(config: SynthConfig, batch: int, generator: torch.Generator, device) -> torch.Tensor:
    """(B,) indices into CONTRASTS drawn with the config's weights, by inverting their CDF.

    Not torch.multinomial: for one sample it checks the weights with `.item()`, a device sync."""
    weights = [float(p) for p in config.contrast_probabilities]
    cdf = constant(tuple(sum(weights[:n + 1]) / sum(weights) for n in range(len(weights))), device)
    u = torch.rand(batch, generator=generator, device=device)
    # right=True: u on a step's edge goes past it, so a zero-weight contrast (a flat step) is never drawn
    return torch.searchsorted(cdf, u, right=True).clamp(max=len(weights) - 1)


def moved_points(points: Optional[torch.Tensor], transform, permutation: Optional[torch.Tensor],
                  config: SpatialConfig) -> Optional[torch.Tensor]:
    """points (B, N, 3) (i, j, k) on the input grid -> where they land in the patch, left/right names
    swapped (`permutation`) in mirrored samples; None without points."""
    if points is None:
        return None
    moved = map_points(transform, points.to(transform.matrix.device).float(), config.point_iterations)
    if permutation is None:
        return moved
    return torch.where(transform.flipped[:, None, None], moved[:, permutation], moved)


def field_of_view(extent: torch.Tensor, transform, config: SynthConfig, generator: torch.Generator) -> torch.Tensor:
    """extent: (B, 1, k, j, i) bool, the scanned region on the input grid -> (B, 1, *out) bool in the
    patch, with a random box cut away on each side (probability `fov_cut_probability`): what the
    normalisation treats as the field of view, so noise and bias outside it never reach the network."""
    inside = warp(extent.float(), transform, "nearest") > 0.5
    batch, device, sizes = inside.shape[0], inside.device, inside.shape[2:]
    cut = torch.rand(batch, generator=generator, device=device) < config.fov_cut_probability
    # (axis, lo / hi, B), drawn in the order of one axis after the other; all axes in a few launches
    span = constant(tuple((config.fov_cut_max * n,) for n in sizes), device)                  # (3, 1)
    lo, hi = (span[:, None] * torch.rand((3, 2, batch), generator=generator, device=device)).unbind(1)
    position = torch.arange(max(sizes), device=device, dtype=torch.float32)
    end = constant(tuple((float(n),) for n in sizes), device) - hi
    keep = (position >= lo[..., None]) & (position < end[..., None]) | ~cut[:, None]
    k, j, i = (keep[axis, :, :n] for axis, n in enumerate(sizes))                       # (B, n) each
    return inside & (k[:, :, None, None] & j[:, None, :, None] & i[:, None, None, :])[:, None]


def acquire(image: torch.Tensor, is_ct: torch.Tensor, noise_scale: torch.Tensor, config: SynthConfig,
            generator: torch.Generator) -> torch.Tensor:
    """Resolution, bias (MR), noise, gamma (MR) of a batch: image (B, 1, k, j, i), is_ct (B,) bool,
    noise_scale (B,) the noise's std_max per sample in the image's units."""
    batch, device = image.shape[0], image.device
    sizes = acquisition.random_voxel_sizes(batch, config.voxel_mm, config.resolution_max_mm,
                                           config.thick_slice_max_mm, config.resolution_probability,
                                           generator, device)
    if config.resolution_probability > 0:
        largest = max(config.resolution_max_mm, config.thick_slice_max_mm, config.voxel_mm)
        image = acquisition.resolution(image, config.voxel_mm, sizes, generator, largest)
    mr = ~is_ct.view(batch, 1, 1, 1, 1)
    image = torch.where(mr, acquisition.bias_field(image, config.bias_std, generator), image)
    image = acquisition.noise(image, noise_scale, generator)
    return torch.where(mr, acquisition.gamma(image, config.gamma_std, generator), image)


class LabelMapGenerator:
    """Images of random contrast from FreeSurfer-coded label maps, with their training labels.

    label_maps: (cases, 1, k, j, i) integer FreeSurfer codes on one grid (pad cases to a common grid
    first); target_codes: the code (or a tuple of codes) of training classes 1..n (everything else is class 0, codes in
    `ignore_codes` are IGNORE_INDEX); point_pairs: (right, left) index pairs swapped under a mirror.
    Maps coded otherwise (e.g. intensity classes of a template) pass their own `tissue_of`,
    `mirrored` and `generation` functions of a code (defaults: FreeSurfer's, labels.py).
    """

    def __init__(self, label_maps: torch.Tensor, target_codes: Sequence[int], out_shape: Sequence[int],
                 config: SynthConfig, ignore_codes: Sequence[int] = (), point_pairs: Sequence = (),
                 point_count: int = 0, tissue_of: Callable[[int], str] = tissue_of,
                 mirrored: Callable[[int], int] = mirrored_code, generation: Callable[[int], int] = generation_code):
        if label_maps.dim() != 5 or label_maps.shape[1] != 1:
            raise ValueError(f"label_maps must be (cases, 1, k, j, i), got {tuple(label_maps.shape)}")
        self.config, self.out_shape, self.device = config, tuple(out_shape), label_maps.device
        # code 0 always exists and gets index 0: what the spatial map reads beyond the volume
        present = {int(c) for c in torch.unique(label_maps).tolist()} | {0}
        codes = sorted(present | {mirrored(c) for c in present} | {generation(c) for c in present})
        if len(codes) > 2 ** 15:
            raise ValueError(f"{len(codes)} distinct labels is more than the generator indexes")
        index = {c: n for n, c in enumerate(codes)}
        lookup = torch.zeros(max(codes) + 1, dtype=torch.long)
        lookup[torch.tensor(codes)] = torch.arange(len(codes))
        self.maps = lookup.to(self.device)[label_maps.long()].to(torch.int16)  # compact indices, stored small

        def as_tensor(values):
            return torch.tensor(values, dtype=torch.long, device=self.device)

        self.tissue = as_tensor([TISSUES.index(tissue_of(generation(c))) for c in codes])
        self.draw_group = as_tensor([index[generation(c)] for c in codes])
        self.swap = as_tensor([index[mirrored(c)] for c in codes])
        self.is_ventricle = as_tensor([generation(c) in LATERAL_VENTRICLES for c in codes]).bool()
        self.is_white = as_tensor([generation(c) in CEREBRAL_WHITE_MATTER for c in codes]).bool()
        self.outside_brain = as_tensor([generation(c) in OUTSIDE_BRAIN for c in codes]).bool()
        classes = {c: n + 1 for n, group in enumerate(target_codes)
                   for c in ((group,) if isinstance(group, int) else group)}
        self.target = as_tensor([IGNORE_INDEX if c in set(ignore_codes) else classes.get(c, 0) for c in codes])
        self.background = index.get(0, -1)
        self.permutation = (as_tensor(point_permutation(point_count, point_pairs)) if point_pairs else None)

    @property
    def in_shape(self) -> tuple:
        return tuple(self.maps.shape[2:])

    def _grow_ventricles(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        config = self.config
        if config.ventricle_growth_probability <= 0:
            return labels
        max_steps = max(1, round(config.ventricle_growth_max_mm / config.voxel_mm))
        steps = random_growth_steps(labels.shape[0], config.ventricle_growth_probability, max_steps,
                                    generator, self.device)
        return grow_ventricles(labels, self.is_ventricle, self.is_white, steps, max_steps)

    def _extract_brain(self, image: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """In a share of the samples, 0 outside the brain, after acquisition (as masking a scan does)."""
        probability = self.config.brain_extraction_probability
        if probability <= 0:   # no draw: the other recipes' random streams stay as they were
            return image
        batch = image.shape[0]
        extracted = torch.rand(batch, generator=generator, device=self.device) < probability
        return torch.where(extracted.view(batch, 1, 1, 1, 1) & self.outside_brain[labels], torch.zeros_like(image), image)

    def __call__(self, cases: torch.Tensor, generator: torch.Generator,
                 points: Optional[torch.Tensor] = None) -> SynthBatch:
        """cases: (B,) indices into label_maps; points: (B, N, 3) (i, j, k) on the input grid."""
        config, batch = self.config, cases.shape[0]
        transform = random_spatial(config.spatial, batch, self.in_shape, self.out_shape, generator, self.device)
        labels = warp(self.maps[cases.to(self.device)].float(), transform, "nearest").long()
        labels = torch.where(transform.flipped.view(batch, 1, 1, 1, 1), self.swap[labels], labels)
        labels = self._grow_ventricles(labels, generator)
        contrast = _draw_contrasts(config, batch, generator, self.device)
        parameters = sample_label_parameters(contrast, self.tissue, generator)
        parameters.means = parameters.means[:, self.draw_group]
        parameters.stds = parameters.stds[:, self.draw_group]
        image = render_labels(labels, parameters, generator)
        is_ct = contrast == CONTRASTS.index("ct")
        noise_scale = torch.where(is_ct, config.noise_std_ct, config.noise_std_mr)
        image = acquire(image, is_ct, noise_scale, config, generator)
        zero = (~is_ct) & (torch.rand(batch, generator=generator, device=self.device)
                           < config.zero_background_probability)
        image = torch.where(zero.view(batch, 1, 1, 1, 1) & (labels == self.background), torch.zeros_like(image), image)
        image = self._extract_brain(image, labels, generator)
        moved = moved_points(points, transform, self.permutation, config.spatial)
        extent = torch.ones((batch, 1) + self.in_shape, dtype=torch.bool, device=self.device)
        inside = field_of_view(extent, transform, config, generator)
        return SynthBatch(image, self.target[labels[:, 0]], moved, contrast, transform.flipped, inside, transform)


RANGE_QUANTILES = (0.005, 0.995)
RANGE_SAMPLES = 1 << 20     # voxels per scan the range is read from (a regular subsample beyond)


def intensity_ranges(images: torch.Tensor, extent: torch.Tensor) -> torch.Tensor:
    """(cases, 1, k, j, i) images and their field-of-view masks -> (cases,) the 0.5-99.5 percentile
    range inside each field of view (the span the inference normalisation maps to [0, 1])."""
    flat = torch.where(extent, images, torch.nan).reshape(images.shape[0], -1).float()
    flat = flat[:, :: max(1, flat.shape[1] // RANGE_SAMPLES)]
    bounds = nan_quantiles(flat, RANGE_QUANTILES)
    return torch.nan_to_num(bounds[:, 1] - bounds[:, 0], nan=0.0).clamp_min(0.0)


class ImageAugmenter:
    """The same spatial and acquisition changes for real images (templates, CT / MR volumes).

    images: (cases, 1, k, j, i) raw intensities on one grid; background: (cases,) what lies outside
    each scan (its minimum); is_ct: (cases,) bool; labels: optional (cases, 1, k, j, i) training
    classes with `class_swap` (a class -> mirrored class list) applied under a mirror; extent:
    optional (cases, 1, k, j, i) bool, where each scan has data (None: the whole grid).
    """

    def __init__(self, images: torch.Tensor, background: torch.Tensor, is_ct: torch.Tensor,
                 out_shape: Sequence[int], config: SynthConfig, labels: Optional[torch.Tensor] = None,
                 class_swap: Optional[Sequence[int]] = None, point_pairs: Sequence = (), point_count: int = 0,
                 extent: Optional[torch.Tensor] = None):
        if images.dim() != 5 or images.shape[1] != 1:
            raise ValueError(f"images must be (cases, 1, k, j, i), got {tuple(images.shape)}")
        if labels is not None and class_swap is None and config.spatial.flip_probability > 0:
            raise ValueError("mirroring labelled images needs class_swap (which class each class becomes)")
        self.device = images.device
        self.images, self.config, self.out_shape = images, config, tuple(out_shape)
        self.background = background.to(self.device).float()
        self.is_ct = is_ct.to(self.device).bool()
        self.labels = None if labels is None else labels.to(torch.int16)
        self.extent = (torch.ones_like(images, dtype=torch.bool) if extent is None
                       else extent.to(self.device).bool())
        self.class_swap = None if class_swap is None else torch.tensor(list(class_swap), dtype=torch.long,
                                                                       device=self.device)
        # Noise relative to each scan's intensity range: MR units are arbitrary. (Not the mean distance
        # from the background, which shrinks with the share of background: a brain-extracted template
        # got noise of 1.5 % of its range at most, and landmarks failed on held-out scans at 5 %.)
        self.intensity_range = intensity_ranges(images, self.extent)
        self.permutation = (torch.tensor(point_permutation(point_count, point_pairs), device=self.device)
                            if point_pairs else None)

    def __call__(self, cases: torch.Tensor, generator: torch.Generator,
                 points: Optional[torch.Tensor] = None) -> SynthBatch:
        config, batch = self.config, cases.shape[0]
        cases = cases.to(self.device)
        transform = random_spatial(config.spatial, batch, tuple(self.images.shape[2:]), self.out_shape,
                                   generator, self.device)
        background = self.background[cases].view(batch, 1, 1, 1, 1)
        image = warp(self.images[cases] - background, transform, "bilinear") + background
        labels = None
        if self.labels is not None:
            labels = warp(self.labels[cases].float(), transform, "nearest").long()[:, 0]
            if self.class_swap is not None:
                labels = torch.where(transform.flipped.view(batch, 1, 1, 1), self.class_swap[labels], labels)
        is_ct = self.is_ct[cases]
        noise_scale = torch.where(is_ct, config.noise_std_ct, config.noise_fraction_real_mr * self.intensity_range[cases])
        image = acquire(image, is_ct, noise_scale, config, generator)
        moved = moved_points(points, transform, self.permutation, config.spatial)
        contrast = torch.where(is_ct, CONTRASTS.index("ct"), -1)
        inside = field_of_view(self.extent[cases], transform, config, generator)
        return SynthBatch(image, labels, moved, contrast, transform.flipped, inside, transform)
