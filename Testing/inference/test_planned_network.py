"""The predictor's network runs as its inference plan; whatever the plan changed is checked against
the eager network on a probe at load, and a copy that disagrees is refused, never swapped back."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from nnmamba.inference.fast_path import fold_batchnorm
from nnmamba.inference.planned_network import (TILE_BATCH_CAP, TOLERANCE, FastPathMismatchError, PlannedNetwork,
                                               check_against_eager, probe_input)
from nnmamba.model_card import read_card
from nnmamba.models import load_model
from nnmamba.networks import build_network

REPO = Path(__file__).resolve().parents[2]

PROBE = (1, 1, 32, 32, 32)


def small_seg(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = build_network("nnMambaSeg", in_ch=1, channels=16, blocks=2, number_classes=3, scan_backend="torch")
    with torch.no_grad():   # BatchNorm statistics that make folding change every convolution
        for m in net.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def test_on_the_cpu_the_plan_folds_the_batchnorms_and_the_copy_is_checked_against_the_eager_network():
    net = small_seg()
    planned = PlannedNetwork(net, torch.device("cpu"), torch.float32, PROBE, name="small")
    assert planned.plan.fold_batchnorm and not planned.plan.cuda_graphs and not planned.plan.fused_miccss
    assert not any(isinstance(m, nn.BatchNorm3d) for m in planned._run.modules())
    assert 0 < planned.relative_error < TOLERANCE[torch.float32]
    x = torch.randn(2, 1, 32, 32, 48)
    with torch.no_grad():
        expected = net(x)
        got = planned(x)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()


def test_a_copy_that_disagrees_with_the_eager_network_is_refused_naming_the_difference_and_tolerance():
    net = small_seg()
    broken = fold_batchnorm(copy.deepcopy(net))
    with torch.no_grad():
        broken.conv8.conv[0].weight.mul_(1.5)   # the head: an error far past the tolerance
    probe = torch.randn(PROBE, generator=torch.Generator().manual_seed(0))
    expected = r"max \|difference\| [\d.e+-]+ > tolerance [\d.e+-]+ \(0\.01 x max \|output\|"
    with pytest.raises(FastPathMismatchError, match=expected):
        check_against_eager(net, broken, probe, torch.bfloat16, name="small")
    assert FastPathMismatchError.code == "fast_path_mismatch"


def test_a_copy_with_nan_is_refused():
    net = small_seg()
    broken = fold_batchnorm(copy.deepcopy(net))
    with torch.no_grad():
        broken.conv8.conv[0].bias.fill_(float("nan"))
    with pytest.raises(FastPathMismatchError, match="disagrees"):
        check_against_eager(net, broken, torch.randn(PROBE), torch.float32)


def test_a_reduced_precision_copy_with_infinite_scores_is_refused_naming_the_fix():
    from nnmamba.inference.planned_network import check_finite

    overflowing = fold_batchnorm(copy.deepcopy(small_seg()))
    with torch.no_grad():
        overflowing.conv8.conv[0].bias.fill_(float("inf"))
    with pytest.raises(FastPathMismatchError, match=r"non-finite scores.*--precision fp32"):
        check_finite(overflowing, torch.randn(PROBE), torch.bfloat16, name="small")
    check_finite(small_seg().eval(), torch.randn(PROBE), torch.bfloat16)   # a finite copy passes


def test_full_float32_turns_tf32_off_inside_and_restores_the_settings():
    from nnmamba.inference.planned_network import full_float32

    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    with full_float32():
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before


def test_the_tile_batch_fills_half_the_free_memory_between_one_and_the_cap():
    planned = PlannedNetwork(small_seg(), torch.device("cpu"), torch.float32, PROBE)
    assert planned.tile_batch_for(10 ** 9) == TILE_BATCH_CAP      # no estimate off CUDA: the cap
    planned.tile_bytes = 2 * 2 ** 30                                 # 2 GiB per tile
    assert planned.tile_batch_for(10 * 2 ** 30) == 2
    assert planned.tile_batch_for(1 * 2 ** 30) == 1
    assert planned.tile_batch_for(100 * 2 ** 30) == TILE_BATCH_CAP


def test_bf16_on_the_cpu_runs_the_folded_copy_under_autocast_checked_in_float32():
    planned = PlannedNetwork(small_seg(), torch.device("cpu"), torch.bfloat16, PROBE)
    assert planned.relative_error < TOLERANCE[torch.float32]   # the folding, not autocast's rounding
    with planned.autocast():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")


def test_a_folded_copy_is_probed_at_32_cubed_whatever_the_tile():
    net = small_seg()
    seen = []
    net.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape)))
    planned = PlannedNetwork(net, torch.device("cpu"), torch.float32, (1, 1, 64, 64, 96), name="small")
    assert seen and set(seen) == {(1, 1, 32, 32, 32)}   # eager and folded copy (the hook is copied too)
    assert planned.relative_error < TOLERANCE[torch.float32]


def test_the_fused_copy_is_probed_at_the_tile_itself():
    import dataclasses

    from nnmamba.inference.planned_network import probe_shape_for

    plan = PlannedNetwork(small_seg(), torch.device("cpu"), torch.float32, PROBE).plan
    assert probe_shape_for(plan, (1, 2, 64, 16, 128)) == (1, 2, 32, 16, 32)
    assert probe_shape_for(dataclasses.replace(plan, fused_miccss=True), (1, 2, 64, 16, 128)) == (1, 2, 64, 16, 128)


def test_the_eager_side_of_a_cuda_check_runs_the_torch_scan_and_gives_the_plan_its_backend_back():
    import dataclasses

    from nnmamba.inference.planned_network import reference_scans
    from nnmamba.ssm.mamba import Mamba

    net = small_seg()
    plan = dataclasses.replace(PlannedNetwork(net, torch.device("cpu"), torch.float32, PROBE).plan,
                               device=torch.device("cuda", 0), scan_backend="reference")
    blocks = [m for m in net.modules() if isinstance(m, Mamba)]
    for block in blocks:
        block.use_plan(plan.device, plan.scan_backend, False, "inference")
    with reference_scans(net, plan):
        assert {block.decision("cuda:0")[0] for block in blocks} == {"torch"}
    assert {block.decision("cuda:0")[0] for block in blocks} == {"reference"}


def test_on_the_cpu_every_job_runs_the_copy_without_graphs():
    planned = PlannedNetwork(small_seg(), torch.device("cpu"), torch.float32, PROBE)
    run, graphs = planned.runner(forwards=10_000, tile_batch=1, tile_shape=(32, 32, 32))
    assert run is planned and not graphs


def test_the_probe_lies_in_the_normalised_range_and_is_the_same_every_time():
    probe = probe_input((1, 1, 8, 8, 8), torch.device("cpu"))
    assert probe.min() >= 0 and probe.max() < 1
    assert torch.equal(probe, probe_input((1, 1, 8, 8, 8), torch.device("cpu")))


def test_a_network_whose_own_scores_are_not_finite_is_refused_as_broken_weights():
    net = small_seg()
    with torch.no_grad():
        net.conv8.conv[0].weight.fill_(float("inf"))
    with pytest.raises(FastPathMismatchError, match="own .eager, float32. network gives non-finite scores"):
        check_against_eager(net, fold_batchnorm(copy.deepcopy(net)), probe_input(PROBE, "cpu"), torch.float32)


def test_the_shipped_segmentation_model_is_probed_where_its_scans_live():
    """Trained weights (step 25,603 of a segmentation run) answered a standard-normal probe with
    scores of ~3e15 (a Mamba block is about cubic in its input's scale); 400 steps later they
    overflowed and the check stopped the run, calling a sound model broken. On the probe in [0, 1)
    the copy is checked at its ordinary scale."""
    card = read_card(REPO / "models" / "brain-structures-seg" / "model.json")
    planned = PlannedNetwork(load_model(card, "cpu", scan_backend="torch"), torch.device("cpu"), torch.float32,
                             (1, 1, 32, 32, 32), name=card.name)
    assert planned.relative_error < TOLERANCE[torch.float32]
    with torch.no_grad():
        scores = planned(probe_input((1, 1, 32, 32, 32), "cpu"))
    assert scores.abs().max() < 1e4
