"""The landmark loss (spatial-softmax divergence from a Gaussian at the point + soft-argmax distance in mm)
pulls every map's probability towards the true point, is least when the scores peak there, and the
soft-argmax it scores reads a drawn point back to a fraction of a voxel."""

import math

import pytest
import torch

from nnmamba.inference.soft_argmax import soft_argmax
from nnmamba.train.losses import gaussian_distributions, landmark_loss

SHAPE = (20, 24, 16)          # (k, j, i)
SPACING = (4.0, 4.0, 4.0)
SIGMA = 2.0                   # voxels (8 mm at 4 mm)


def _log_gaussian_scores(points_ijk: torch.Tensor, shape=SHAPE, sigma=SIGMA) -> torch.Tensor:
    """Scores whose spatial softmax is exactly the normalised Gaussian at `points_ijk` (B, N, 3)."""
    distributions, _ = gaussian_distributions(points_ijk, shape, sigma)
    return distributions.clamp_min(1e-30).log()


def test_the_gradient_of_flat_scores_points_at_the_true_position():
    point = torch.tensor([[[5.0, 13.0, 9.0]]])                    # (i, j, k)
    scores = torch.zeros((1, 1) + SHAPE, requires_grad=True)
    landmark_loss(scores, point, SPACING, SIGMA).backward()
    descent = -scores.grad[0, 0]
    k, j, i = (int(v) for v in torch.nonzero(descent == descent.max())[0])
    assert (i, j, k) == (5, 13, 9)
    # far from the point, descent lowers the scores (probability moves out of there)
    assert float(descent[0, 0, 15]) < 0


def test_the_loss_is_least_when_the_scores_peak_at_the_true_point():
    point = torch.tensor([[[7.3, 11.6, 9.2]]])
    at_truth = landmark_loss(_log_gaussian_scores(point), point, SPACING, SIGMA)
    assert abs(float(at_truth)) < 0.05                           # divergence 0; soft-argmax within 0.1 voxel
    for shift in ([1, 0, 0], [0, -1, 0], [0, 0, 2], [3, 3, 0], [-6, 0, 4]):
        shifted = _log_gaussian_scores(point + torch.tensor(shift, dtype=torch.float32))
        assert landmark_loss(shifted, point, SPACING, SIGMA) > at_truth + 0.1, shift
    # a far blob holding half the probability costs millimetres as well as divergence
    far = torch.logaddexp(_log_gaussian_scores(point), _log_gaussian_scores(torch.tensor([[[1.0, 2.0, 1.0]]])))
    assert landmark_loss(far, point, SPACING, SIGMA) > landmark_loss(_log_gaussian_scores(point + 1), point,
                                                                     SPACING, SIGMA)


def test_flat_scores_cost_the_log_of_the_patch_size_less_the_targets_entropy():
    point = torch.tensor([[[8.0, 12.0, 10.0]]])                  # the patch centre: no mm term
    expected = math.log(math.prod(SHAPE)) - 1.5 * math.log(2 * math.pi * math.e * SIGMA ** 2)
    centre = torch.tensor([[[7.5, 11.5, 9.5]]])
    value = landmark_loss(torch.zeros((1, 1) + SHAPE), centre, SPACING, SIGMA, mm_weight=0.0)
    assert float(value) == pytest.approx(expected, abs=0.05)
    assert float(landmark_loss(torch.zeros((1, 1) + SHAPE), point, SPACING, SIGMA, mm_weight=0.0)) > 0


def test_points_outside_the_patch_count_in_neither_term():
    inside = torch.tensor([[[5.0, 6.0, 7.0]]])
    both = torch.tensor([[[5.0, 6.0, 7.0], [-30.0, 6.0, 7.0]]])
    scores = torch.randn((1, 2) + SHAPE, generator=torch.Generator().manual_seed(0))
    assert torch.isclose(landmark_loss(scores, both, SPACING, SIGMA), landmark_loss(scores[:, :1], inside, SPACING, SIGMA))


@pytest.mark.parametrize("point", [[5.3, 13.8, 9.45], [4.2, 5.1, 14.9], [11.6, 18.4, 4.5]])
def test_soft_argmax_reads_a_drawn_point_back_to_within_half_a_voxel(point):
    # (points two sigma or more inside the patch: nearer the border the cut Gaussian's mean moves inwards)
    drawn = torch.tensor([[point]])
    read = soft_argmax(_log_gaussian_scores(drawn))
    assert float((read - drawn).abs().max()) < 0.5
    # more than two sigma from every border it is exact to a twentieth of a voxel
    if point[0] == 5.3:
        assert float((read - drawn).abs().max()) < 0.05
