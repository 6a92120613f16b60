"""Per-label random intensities: one Gaussian per label, per sample, for MR contrasts and CT.

Contrasts (index = position in CONTRASTS):
- "any": SynthSeg's prior, every label's mean U(25, 225) and std U(5, 25), independently, so the
  network sees every contrast there is and cannot rely on any one of them;
- "t1w", "t2w": tissue-ordered priors (T1: white > grey > CSF, fat bright; T2: CSF > grey > white),
  one mean per tissue per sample and a +-7 % jitter per label, for scan-type training;
- "ct": Hounsfield units per tissue (air -1000, fat -120..-60, CSF 0..15, white 20..32, grey 32..45,
  bone 300..1200), small stds: CT's contrast is fixed by physics, only its noise and scanner vary.

No library draws per-label mixtures (MONAI's intensity transforms act on whole images), so this is
the one op written here: a gather of per-sample per-label parameters by the label map.

Example:
    >>> labels = torch.zeros(2, 1, 8, 8, 8, dtype=torch.long)          # generation indices
    >>> tissues = torch.tensor([0])                                      # label 0 is background
    >>> g = torch.Generator().manual_seed(0)
    >>> p = sample_label_parameters(torch.tensor([0, 3]), tissues, g)
    >>> render_labels(labels, p, g).shape
    torch.Size([2, 1, 8, 8, 8])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nnmamba.train.synth.constants import constant
from nnmamba.train.synth.labels import TISSUES

CONTRASTS = ("any", "t1w", "t2w", "ct")

# (mean low, mean high, std low, std high) per tissue, in TISSUES order.
_PRIORS = {
    "t1w": [(0, 15, 1, 6), (15, 60, 3, 10), (70, 110, 3, 10), (120, 170, 3, 10), (90, 135, 3, 10),
            (5, 40, 3, 10), (170, 240, 5, 15), (60, 130, 5, 15), (40, 180, 5, 20)],
    "t2w": [(0, 15, 1, 6), (170, 240, 3, 12), (100, 140, 3, 10), (60, 95, 3, 10), (80, 120, 3, 10),
            (5, 40, 3, 10), (110, 190, 5, 15), (60, 120, 5, 15), (20, 150, 5, 20)],
    "ct": [(-1000, -950, 2, 15), (0, 15, 2, 6), (32, 45, 2, 6), (20, 32, 2, 6), (30, 42, 2, 6),
           (300, 1200, 50, 200), (-120, -60, 3, 10), (20, 60, 3, 10), (40, 70, 3, 10)],
}
_ANY = (25.0, 225.0, 5.0, 25.0)
LABEL_JITTER = 0.07


@dataclass
class LabelParameters:
    means: torch.Tensor   # (B, G) per sample, per generation label
    stds: torch.Tensor    # (B, G)


def _prior_table(device) -> torch.Tensor:
    """(contrasts, tissues, 4): CONTRASTS x TISSUES x (mean lo, mean hi, std lo, std hi)."""
    rows = [[_ANY] * len(TISSUES)] + [_PRIORS[c] for c in CONTRASTS[1:]]
    return constant(tuple(tuple(tuple(float(v) for v in entry) for entry in row) for row in rows), device)


def sample_label_parameters(contrast: torch.Tensor, tissue: torch.Tensor,
                            generator: torch.Generator) -> LabelParameters:
    """contrast: (B,) indices into CONTRASTS; tissue: (G,) indices into TISSUES -> per-label Gaussians."""
    device = tissue.device
    batch, labels = contrast.shape[0], tissue.shape[0]
    prior = _prior_table(device)[contrast]                        # (B, T, 4)
    per_tissue = torch.rand((batch, len(TISSUES), 2), generator=generator, device=device)
    tissue_mean = prior[..., 0] + per_tissue[..., 0] * (prior[..., 1] - prior[..., 0])
    tissue_std = prior[..., 2] + per_tissue[..., 1] * (prior[..., 3] - prior[..., 2])
    per_label = torch.rand((batch, labels, 3), generator=generator, device=device)
    jitter = 1 + LABEL_JITTER * (2 * per_label[..., 2] - 1)
    mean_of_tissue = tissue_mean[:, tissue]
    ordered_mean = mean_of_tissue + (jitter - 1) * mean_of_tissue.abs()   # sign-safe for negative HU
    ordered_std = tissue_std[:, tissue]
    free_mean = _ANY[0] + per_label[..., 0] * (_ANY[1] - _ANY[0])
    free_std = _ANY[2] + per_label[..., 1] * (_ANY[3] - _ANY[2])
    is_free = (contrast == CONTRASTS.index("any"))[:, None]
    return LabelParameters(torch.where(is_free, free_mean, ordered_mean), torch.where(is_free, free_std, ordered_std))


def render_labels(labels: torch.Tensor, parameters: LabelParameters, generator: torch.Generator) -> torch.Tensor:
    """labels: (B, 1, k, j, i) generation indices 0..G-1 -> (B, 1, k, j, i) float32 image, each voxel
    drawn from its label's Gaussian."""
    flat = labels.reshape(labels.shape[0], -1).long()
    mean = parameters.means.gather(1, flat)
    std = parameters.stds.gather(1, flat)
    noise = torch.randn(flat.shape, generator=generator, device=labels.device)
    return (mean + std * noise).view(labels.shape)
