"""One training problem per task: draws a whole batch on the device and scores the output.

Every case is stacked once onto the training device (padded to a common grid); a batch is then a
few batched tensor ops, with no per-sample Python loop and no host round trip: pick cases (a
torch.Generator on the device), generate images from label maps and/or augment real images
(`nnmamba.train.synth`, moving labels and landmark points with the image), normalise with the card's
rule (`normalize_batch`, the inference pipeline's arithmetic), move landmark points with the image.
Where the batch comes from is the task's `DataRecipe` (recipes.py).

Example:
    >>> problem = make_problem(card, cases, device, seed=0, recipe=recipe, label_maps=maps)  # doctest: +SKIP
    >>> x, target = problem.batch(2)                                 # x: (2, 1, k, j, i)
    >>> loss = problem.loss(network(x), target)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional, Sequence

import numpy as np
import torch

from nnmamba.inference.normalization import normalize_batch
from nnmamba.tasks import get_task
from nnmamba.train import losses
from nnmamba.train.data import PreparedCase, centre_padded, class_of_case
from nnmamba.train.recipes import DataRecipe, default_recipe
from nnmamba.train.synth import IGNORE_INDEX, ImageAugmenter, LabelMapGenerator, SynthBatch
from nnmamba.train.synth.generator import moved_points
from nnmamba.train.synth.head import add_head_layers
from nnmamba.train.synth.intensity import CONTRASTS
from nnmamba.train.synth.labels import point_permutation
from nnmamba.train.synth.spatial import concatenate


def class_swap_from_names(names: Sequence[str]) -> list:
    """Class n -> the class of the same name with Left/Right exchanged (itself when there is none);
    index 0 is the background. IGNORE_INDEX maps to itself."""
    index = {name: n + 1 for n, name in enumerate(names)}
    swap = list(range(max(len(names) + 1, IGNORE_INDEX + 1)))
    for name, n in index.items():
        other = name.replace("Left", "\0").replace("Right", "Left").replace("\0", "Right")
        swap[n] = index.get(other, n)
    return swap


MIN_TRANSLATE_VOXELS = 8.0


def _patch_kji(card: dict) -> tuple:
    return tuple(int(p) for p in card["input"]["patch_size"][::-1])  # card: (i, j, k)


def _background(image: np.ndarray) -> float:
    return float(image.min())


class _Problem:
    task = ""

    def __init__(self, card: dict, cases: Sequence[PreparedCase], device: torch.device, seed: int,
                 recipe: Optional[DataRecipe] = None, label_maps: Sequence[PreparedCase] = ()):
        voxel = float(card["input"]["spacing_mm"][0])
        self.recipe = recipe or default_recipe(self.task)
        self.card, self.cases, self.label_maps, self.device = card, list(cases), list(label_maps), device
        self.normalization = card["input"]["normalization"]
        self.patch = _patch_kji(card)
        self.generator = torch.Generator(device=device).manual_seed(int(seed))
        self.rng = np.random.default_rng(seed)         # host-side choices only (how many real samples)
        self.real_fraction = self.recipe.real_fraction
        wants_generated = self.real_fraction < 1.0
        if wants_generated and not self._can_generate():
            raise ValueError(f"the {self.task} recipe generates {1 - self.real_fraction:.0%} of each batch from "
                             f"label maps but the prepared data lists none (split 'label_maps'): re-run "
                             f"scripts/prepare_data.py")
        if self.real_fraction > 0 and not self.cases:
            raise ValueError(f"no training cases for {self.task}")
        shapes = [c.shape_kji for c in self.cases + self.label_maps]
        largest = np.max(shapes, axis=0)
        reach = float(max(0.0, np.max((largest - np.array(self.patch)) / 2.0)))
        translate_voxels = max(MIN_TRANSLATE_VOXELS, reach + self.recipe.translate_beyond_reach_voxels)
        # the card's voxel, not the recipe's: resolution is simulated relative to the working grid
        self.synth = replace(self.recipe.synth, voxel_mm=voxel, spatial=replace(
            self.recipe.synth.spatial, translate_voxels=translate_voxels))
        self.augmentation_description = (self.recipe.description or "") + \
            f"; translation up to {translate_voxels:.0f} voxels; all on the training device, whole batches"

    def _can_generate(self) -> bool:
        return bool(self.label_maps)

    def _stack_images(self) -> tuple:
        images, offsets = centre_padded([c.image for c in self.cases], [_background(c.image) for c in self.cases])
        background = torch.tensor([_background(c.image) for c in self.cases], device=self.device)
        is_ct = torch.tensor([c.modality == "CT" for c in self.cases], device=self.device)
        return torch.as_tensor(images, device=self.device)[:, None], background, is_ct, offsets

    def _stack_extents(self) -> torch.Tensor:
        """(cases, 1, k, j, i) bool: where each stacked case has data (not the centring pad)."""
        extents, _ = centre_padded([np.ones(c.image.shape, dtype=bool) for c in self.cases], [False] * len(self.cases))
        return torch.as_tensor(extents, device=self.device)[:, None]

    def _stack_label_maps(self) -> torch.Tensor:
        codes, _ = centre_padded([c.codes for c in self.label_maps], [0] * len(self.label_maps))
        maps = torch.as_tensor(codes.astype(np.int64), device=self.device)[:, None]
        if self.recipe.head_layers:
            maps = add_head_layers(maps, float(self.card["input"]["spacing_mm"][0]))
        return maps

    def _pick(self, count: int, population: int) -> torch.Tensor:
        return torch.randint(0, population, (count,), generator=self.generator, device=self.device)

    def _counts(self, size: int) -> tuple:
        """(real, generated) samples: the fraction's whole part, plus one more real sample with the
        probability of its remainder (so a batch of 1 still mixes both sources over the steps)."""
        exact = size * self.real_fraction
        real = int(exact) + int(self.rng.random() < exact - int(exact))
        return real, size - real

    def batch_parts(self, size: int) -> "list[SynthBatch]":
        """The SynthBatch of each source (real, generated) that contributes to a batch of `size`."""
        real, generated = self._counts(size)
        parts = []
        if real:
            parts.append(self._real(real))
        if generated:
            parts.append(self._generated(generated))
        return parts

    def _images(self, parts: list) -> torch.Tensor:
        inside = None
        if all(p.inside is not None for p in parts):
            inside = torch.cat([p.inside for p in parts])
        return normalize_batch(torch.cat([p.image for p in parts]), self.normalization, inside)


class SegmentationProblem(_Problem):
    task = "segmentation"

    def __init__(self, card, cases, device, seed, recipe=None, label_maps=()):
        super().__init__(card, cases, device, seed, recipe, label_maps)
        names = [item["name"] for item in sorted(card["labels"], key=lambda item: item["value"])]
        if self.real_fraction > 0:
            images, background, is_ct, _ = self._stack_images()
            labels, _ = centre_padded([c.labels for c in self.cases], [0] * len(self.cases))
            self.real = ImageAugmenter(images, background, is_ct, self.patch, self.synth,
                                       labels=torch.as_tensor(labels, device=device)[:, None],
                                       class_swap=class_swap_from_names(names), extent=self._stack_extents())
        if self.real_fraction < 1:
            codes = list(self.recipe.target_codes)
            if len(codes) != len(names):
                raise ValueError(f"the recipe's {len(codes)} target codes do not match the card's {len(names)} "
                                 f"labels; prepare the data and the card with the same structure list")
            # auxiliary classes (white matter, cortex, ...) follow the card's labels: the network learns
            # them so background is not one giant class, and inference maps them to background
            auxiliary = [codes for _, codes in self.recipe.auxiliary_classes]
            classes = int(card.get("hyperparameters", {}).get("number_classes", len(names) + 1 + len(auxiliary)))
            if len(names) + 1 + len(auxiliary) != classes:
                raise ValueError(f"the card's network has {classes} classes but the recipe trains "
                                 f"{len(names) + 1 + len(auxiliary)} (background, {len(names)} labels, "
                                 f"{len(auxiliary)} auxiliary)")
            self.synthetic = LabelMapGenerator(self._stack_label_maps(), codes + auxiliary, self.patch, self.synth,
                                               ignore_codes=self.recipe.ignore_codes)

    def _real(self, count):
        return self.real(self._pick(count, len(self.cases)), self.generator)

    def _generated(self, count):
        return self.synthetic(self._pick(count, len(self.label_maps)), self.generator)

    def batch(self, size: int):
        parts = self.batch_parts(size)
        return self._images(parts), torch.cat([p.labels for p in parts])

    def loss(self, output, target):
        return losses.deep_supervision_loss(output, target, ignore_index=IGNORE_INDEX)


def _pseudo_labels(image: np.ndarray, classes: int) -> np.ndarray:
    """A template's own intensity classes as a label map: 0 at its background, 1..classes by quantile
    of the rest. Generating from it keeps the template's anatomy (and its landmarks) exactly while
    the contrast becomes anything."""
    background = _background(image)
    foreground = image[image > background + 1e-3 * (image.max() - background)]
    edges = np.quantile(foreground, np.linspace(0, 1, classes + 1)[1:-1])
    labels = np.digitize(image, edges) + 1
    labels[image <= background + 1e-3 * (image.max() - background)] = 0
    return labels.astype(np.int16)


def _checked_pairs(names: Sequence[str], pairs: Sequence) -> list:
    """The recipe's (right, left) point pairs, after checking that the card's names agree (R<x> / L<x>,
    as the AFIDs acronyms are): a mirror must never swap two unrelated points."""
    for right, left in pairs:
        if max(right, left) >= len(names) or not (names[right][:1] == "R" and names[left][:1] == "L"
                                                  and names[right][1:] == names[left][1:]):
            raise ValueError(f"the recipe's left/right point pairs do not fit this card's landmarks (pair "
                             f"{(right, left)} of {len(names)} names); give the recipe pairs for these names "
                             f"or set its flip_probability to 0")
    return list(pairs)


# The target Gaussian's width: about two voxels of the 4 mm working grid, wide enough that the spatial
# softmax sees a blob (not a single voxel) and the soft-argmax reads it to sub-voxel precision.
LANDMARK_SIGMA_MM = 8.0
SAME_POINT_MM = 0.01                # points this close are the same anatomy's


def anatomy_shares(points_lps: Sequence[np.ndarray]) -> np.ndarray:
    """Each landmark case's chance of being drawn, so that every anatomy comes up equally often: cases
    whose ground-truth points coincide (one template in several contrasts, e.g. MNI 2009c T1w, T2w and
    its brain-extracted copy) are one anatomy and split its share."""
    points = [np.asarray(p, dtype=np.float64) for p in points_lps]
    if not points:
        raise ValueError("no landmark cases to draw from")
    copies = np.array([sum(np.allclose(p, q, rtol=0.0, atol=SAME_POINT_MM) for q in points) for p in points])
    shares = 1.0 / copies
    return shares / shares.sum()


class LandmarkProblem(_Problem):
    """Batches: (normalised images (B, 1, k, j, i), true points (B, N, 3) as (i, j, k) patch voxels);
    the loss builds its Gaussian targets from the points (`losses.landmark_loss`)."""
    task = "landmarks"

    def __init__(self, card, cases, device, seed, sigma_mm: Optional[float] = None, recipe=None, label_maps=()):
        super().__init__(card, cases, device, seed, recipe, label_maps)
        self.sigma_mm = LANDMARK_SIGMA_MM if sigma_mm is None else float(sigma_mm)
        self.spacing_mm = [float(s) for s in card["input"]["spacing_mm"]]
        self.sigma = self.sigma_mm / self.spacing_mm[0]
        count = len(card["landmarks"])
        images, background, is_ct, offsets = self._stack_images()
        points = np.stack([c.landmarks_ijk() for c in self.cases]) + offsets[:, None, :]
        self.points = torch.as_tensor(points, dtype=torch.float32, device=device)
        pairs = _checked_pairs([item["name"] for item in card["landmarks"]], self.recipe.point_pairs)
        self.permutation = (torch.tensor(point_permutation(count, pairs), device=device) if pairs else None)
        self.case_shares = torch.as_tensor(anatomy_shares([c.landmarks_lps for c in self.cases]),
                                           dtype=torch.float32, device=device)
        self.real = ImageAugmenter(images, background, is_ct, self.patch, self.synth,
                                   point_pairs=pairs, point_count=count, extent=self._stack_extents())
        if self.real_fraction < 1:
            pseudo, _ = centre_padded([_pseudo_labels(c.image, self.recipe.pseudo_label_classes) for c in self.cases],
                                      [0] * len(self.cases))
            self.synthetic = LabelMapGenerator(
                torch.as_tensor(pseudo.astype(np.int64), device=device)[:, None], [], self.patch, self.synth,
                point_pairs=pairs, point_count=count, tissue_of=lambda c: "background" if c == 0 else "grey",
                mirrored=lambda c: c, generation=lambda c: c)

    def _can_generate(self) -> bool:
        return self.recipe.pseudo_label_classes > 1 and bool(self.cases)

    def _draw(self, source, count: int) -> tuple:
        cases = torch.multinomial(self.case_shares, count, replacement=True, generator=self.generator)
        return source(cases, self.generator), self.points[cases]

    def batch_parts(self, size: int) -> "list[SynthBatch]":
        """The real and generated parts, their points moved by one solve over both parts' maps (the
        solve is a loop of small launches: one loop for the batch, not one per part)."""
        real, generated = self._counts(size)
        drawn = []
        if real:
            drawn.append(self._draw(self.real, real))
        if generated:
            drawn.append(self._draw(self.synthetic, generated))
        transform = concatenate([part.transform for part, _ in drawn])
        points = torch.cat([points for _, points in drawn])
        moved = moved_points(points, transform, self.permutation, self.synth.spatial)
        for (part, _), rows in zip(drawn, moved.split([len(points) for _, points in drawn])):
            part.points = rows
        return [part for part, _ in drawn]

    def batch(self, size: int):
        parts = self.batch_parts(size)
        return self._images(parts), torch.cat([p.points for p in parts])

    def loss(self, output, target):
        return losses.landmark_loss(output, target, self.spacing_mm, self.sigma)


# which card class a generated contrast is, by the card's class names (3-class or CT / MR cards)
CONTRAST_CLASS_NAMES = {"t1w": ("T1w MR", "MR"), "t2w": ("T2w MR", "MR"), "ct": ("CT",)}


def balanced_sources(class_count: int, real_classes: set, generated_classes: set, real_fraction: float) -> tuple:
    """(real fraction, generated weight of each class) that make every class 1/class_count of the
    samples, when real samples are spread evenly over `real_classes` and generated ones drawn with
    the returned weights (summing to 1, zero outside `generated_classes`).

    The recipe's real fraction is kept where it can be and lowered where it cannot: each real class
    may take at most 1/class_count, so the real share is at most len(real_classes)/class_count, and
    exactly that when a class can only be real. Example: CT and T1w real, CT / T1w / T2w generated,
    real fraction 0.5 -> (0.5, [1/6, 1/6, 2/3]): each class a third in all.
    """
    share = 1.0 / class_count
    if not generated_classes:
        return 1.0, [0.0] * class_count
    if not real_classes:
        fraction = 0.0
    elif real_classes - generated_classes:
        fraction = len(real_classes) / class_count
    else:
        fraction = min(real_fraction, len(real_classes) / class_count)
    if fraction >= 1.0:
        return 1.0, [0.0] * class_count
    per_real_class = fraction / len(real_classes) if real_classes else 0.0
    weights = [(share - (per_real_class if k in real_classes else 0.0)) / (1.0 - fraction) for k in range(class_count)]
    weights = [max(0.0, w) if k in generated_classes else 0.0 for k, w in enumerate(weights)]
    total = sum(weights)
    return fraction, [w / total for w in weights]


class ClassificationProblem(_Problem):
    """Every class drawn equally often over real and generated samples together (the recipe's real
    fraction lowered where the real volumes cover too few classes), cross-entropy with the recipe's
    label smoothing."""
    task = "classification"

    def __init__(self, card, cases, device, seed, recipe=None, label_maps=()):
        super().__init__(card, cases, device, seed, recipe, label_maps)
        names = [c["name"] for c in card["classes"]]
        real_classes, generated_classes = set(), set()
        if self.real_fraction > 0:
            images, background, is_ct, _ = self._stack_images()
            self.real = ImageAugmenter(images, background, is_ct, self.patch, self.synth, extent=self._stack_extents())
            targets = [class_of_case(c, names) for c in self.cases]
            self.targets = torch.tensor(targets, device=device)
            # Balanced: a class, then one of its cases (CT volumes are few).
            by_class = [[n for n, t in enumerate(targets) if t == k] for k in range(len(names))]
            present = [members for members in by_class if members]
            width = max(len(m) for m in present)
            self.members = torch.tensor([m + [m[0]] * (width - len(m)) for m in present], device=device)
            self.member_counts = torch.tensor([len(m) for m in present], device=device)
            real_classes = set(targets)
        if self.real_fraction < 1:
            self.contrast_class = torch.full((len(CONTRASTS),), -1, dtype=torch.long, device=device)
            contrast_classes = []
            for n, contrast in enumerate(CONTRASTS):
                weight = self.synth.contrast_probabilities[n]
                match = [names.index(c) for c in CONTRAST_CLASS_NAMES.get(contrast, ()) if c in names]
                if weight > 0 and not match:
                    raise ValueError(f"the recipe generates contrast {contrast!r}, which is none of the classes {names}")
                if match:
                    self.contrast_class[n] = match[0]
                contrast_classes.append(match[0] if match and weight > 0 else None)
            generated_classes = {k for k in contrast_classes if k is not None}
        missing = [names[k] for k in range(len(names)) if k not in real_classes | generated_classes]
        if missing:
            raise ValueError(f"classification training needs every class; nothing in the data is {missing}")
        if generated_classes:
            asked = self.real_fraction
            self.real_fraction, class_weights = balanced_sources(len(names), real_classes, generated_classes, asked)
            if self.real_fraction < 1:
                self.synth = replace(self.synth, contrast_probabilities=_contrast_weights(
                    class_weights, contrast_classes, self.synth.contrast_probabilities))
                self.synthetic = LabelMapGenerator(self._stack_label_maps(), [], self.patch, self.synth)
            self.augmentation_description += "; " + _balance_description(names, real_classes, self.real_fraction,
                                                                         class_weights, asked)
        self.label_smoothing = self.recipe.label_smoothing

    def _real(self, count):
        row = self._pick(count, len(self.member_counts))
        within = (torch.rand(count, generator=self.generator, device=self.device)
                  * self.member_counts[row]).long().clamp(max=self.members.shape[1] - 1)
        cases = self.members[row, within]
        part = self.real(cases, self.generator)
        part.contrast = self.targets[cases]          # from here on `contrast` holds the class
        return part

    def _generated(self, count):
        part = self.synthetic(self._pick(count, len(self.label_maps)), self.generator)
        part.contrast = self.contrast_class[part.contrast]
        return part

    def batch(self, size: int):
        parts = self.batch_parts(size)
        return self._images(parts), torch.cat([p.contrast for p in parts])

    def loss(self, output, target):
        return losses.classification_loss(output, target, label_smoothing=self.label_smoothing)


def _contrast_weights(class_weights: Sequence[float], contrast_classes: Sequence, recipe_weights: Sequence[float]) -> tuple:
    """Each class's generated weight shared among the contrasts that make it (e.g. T1w and T2w for an
    "MR" class) in the recipe's proportions."""
    per_class = {}
    for k, w in zip(contrast_classes, recipe_weights):
        if k is not None:
            per_class[k] = per_class.get(k, 0.0) + float(w)
    return tuple(class_weights[k] * float(w) / per_class[k] if k is not None else 0.0
                 for k, w in zip(contrast_classes, recipe_weights))


def _balance_description(names, real_classes, fraction, class_weights, asked) -> str:
    real = ", ".join(names[k] for k in sorted(real_classes)) or "none"
    generated = ", ".join(f"{name} {w:.0%}" for name, w in zip(names, class_weights) if w > 0)
    lowered = f" (recipe {asked:.0%}, lowered to balance the classes)" if fraction < asked - 1e-9 else ""
    rest = f", the rest generated: {generated}" if generated else ""
    return f"classes balanced ({1 / len(names):.0%} each): {fraction:.0%} real{lowered} spread evenly over {real}{rest}"


def make_problem(card: dict, cases, device, seed: int, sigma_mm: Optional[float] = None, recipe: Optional[DataRecipe] = None,
                 label_maps: Sequence[PreparedCase] = ()) -> _Problem:
    """The training problem of the card's task: each task (`nnmamba.tasks`) names its problem class."""
    return get_task(card["task"]).make_problem(card, cases, device, seed, sigma_mm, recipe, label_maps)
