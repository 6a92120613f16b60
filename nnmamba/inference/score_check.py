"""The network's scores on a user's volume must be finite before they are decoded.

The load-time probe (planned_network.py) shows the network is sound on inputs in [0, 1); a volume
can still drive it out of range where the probe could not (a z-score card given an extreme outlier
in bfloat16; the Mamba blocks grow about with the cube of their input's scale). Decoded, NaN or
infinite scores would give an empty or arbitrary segmentation, landmark or class that looks like an
answer, so the job fails instead, saying what to try.

    check_scores_finite(output, card_name="brain-structures-seg", precision="bf16")
"""

from __future__ import annotations

import torch

from nnmamba.errors import ModelError


class NonFiniteScoresError(ModelError):
    """The network gave NaN or infinite scores on this volume; keeps ModelError's code."""


def check_scores_finite(scores: torch.Tensor, card_name: str, precision: str) -> None:
    """NonFiniteScoresError unless every score is finite (one pass over the scores, one sync);
    `precision`: the job's, by its option name ("fp32", "bf16", "fp16")."""
    finite = torch.isfinite(scores)
    if bool(finite.all()):
        return
    share = 1.0 - float(finite.float().mean())
    remedy = ("Run it in fp32 (`--precision fp32`; in Slicer, Device and options > Precision); if it fails there "
              "too, check" if precision != "fp32" else "Check")
    raise NonFiniteScoresError(
        f"{card_name} gave non-finite scores (NaN or infinity) for {share:.2%} of its outputs on this volume in "
        f"{precision}, so no result is returned: decoded, they would look like an answer and mean nothing. "
        f"{remedy} the scan's intensities for extreme values (the model sees them after its normalisation) "
        f"or the model's weights.")
