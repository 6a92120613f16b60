"""CUDA graphs are captured only when their replays in the job save more than the capture costs."""

from __future__ import annotations

import pytest

from nnmamba.inference.graph_policy import MEASURED, forwards_in_job, graphs_pay_off

TILE = 128 ** 3


def test_a_long_job_of_single_tiles_captures_its_graph_in_bf16_and_fp32():
    for dtype in ("bfloat16", "float32"):
        use, why = graphs_pay_off(forwards=100, tile_batch=1, tile_voxels=TILE, dtype_name=dtype)
        assert use, why
        assert "99 replays" in why


def test_a_job_of_a_few_forwards_runs_without_a_graph():
    use, why = graphs_pay_off(forwards=5, tile_batch=1, tile_voxels=TILE, dtype_name="bfloat16")
    assert not use
    assert "4 replays" in why and "to capture" in why


def test_a_tile_batch_that_keeps_the_device_busy_never_captures_whatever_the_job_length():
    for forwards in (2, 13, 10_000):
        use, why = graphs_pay_off(forwards=forwards, tile_batch=8, tile_voxels=TILE, dtype_name="bfloat16")
        assert not use
        assert "save nothing" in why


def test_smaller_tiles_stay_launch_bound_at_larger_batches():
    assert graphs_pay_off(forwards=50, tile_batch=4, tile_voxels=64 ** 3, dtype_name="bfloat16")[0]
    assert not graphs_pay_off(forwards=50, tile_batch=4, tile_voxels=TILE, dtype_name="bfloat16")[0]


def test_a_graph_an_earlier_job_captured_is_replayed_even_for_one_forward():
    use, why = graphs_pay_off(forwards=1, tile_batch=1, tile_voxels=TILE, dtype_name="bfloat16", captured=True)
    assert use and "earlier job" in why


def test_the_break_even_follows_the_measured_costs():
    costs = MEASURED["bfloat16"]
    saving = costs.saving_per_replay_s(1, TILE)
    replays_needed = int(costs.capture_s(1, TILE) / saving) + 1
    assert graphs_pay_off(replays_needed + 1, 1, TILE, "bfloat16")[0]
    assert not graphs_pay_off(replays_needed, 1, TILE, "bfloat16")[0]


def test_a_dtype_without_measured_costs_runs_without_a_graph():
    use, why = graphs_pay_off(forwards=1000, tile_batch=1, tile_voxels=TILE, dtype_name="float64")
    assert not use and "float64" in why


def test_forwards_count_every_batch_and_mirror():
    assert forwards_in_job(tiles=100, tile_batch=8) == 13
    assert forwards_in_job(tiles=100, tile_batch=8, mirrors=8) == 104
    assert forwards_in_job(tiles=0, tile_batch=2) == 0


def test_impossible_job_sizes_are_refused():
    with pytest.raises(ValueError, match="tile_batch >= 1"):
        forwards_in_job(tiles=10, tile_batch=0)
    with pytest.raises(ValueError, match="forwards >= 0"):
        graphs_pay_off(forwards=-1, tile_batch=1, tile_voxels=TILE, dtype_name="float32")
