"""The `torch` backend's GPU (levels) policy against the `reference` oracle, run on the CPU by
passing the policy explicitly; tiny chunks and group budgets force many levels and groups."""

from __future__ import annotations

import pytest
import torch

from nnmamba.ssm.hierarchical_scan import channel_groups, scan_states_
from nnmamba.ssm.reference_scan import selective_scan_reference
from nnmamba.ssm.torch_scan import (CACHE_POLICY, LEVELS_POLICY, ScanPolicy, policy_for,
                                    selective_scan_torch)

from test_scan_backends import make_inputs, make_inputs_without_optional_arguments, relative_error

KEYS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def levels(chunk, group_elements=LEVELS_POLICY.group_elements):
    return ScanPolicy(levels=True, chunk=chunk, group_elements=group_elements)


def outputs_and_gradients(fn, inputs, seed=0):
    """y and the gradients of every input for a fixed, non-uniform weighting of y."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items()}
    y = fn(**leaves, delta_softplus=True)
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    (y * weights.to(y.device, y.dtype)).sum().backward()
    return y.detach(), {k: leaves[k].grad for k in inputs}


def loop_recurrence(x, s, A2, reverse):
    """The recurrence of scan_states_ one token at a time, out of place."""
    h, states = torch.zeros_like(x[:, 0]), [None] * x.shape[1]
    order = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
    for t in order:
        h = torch.exp2(s[:, t].unsqueeze(-2) * A2) * h + x[:, t]
        states[t] = h
    return torch.stack(states, dim=1)


def test_the_cpu_keeps_the_cache_policy_and_gpus_get_the_levels_policy():
    assert policy_for(torch.device("cpu")) == CACHE_POLICY
    assert policy_for("cuda:0") == LEVELS_POLICY and policy_for("mps") == LEVELS_POLICY
    assert LEVELS_POLICY.levels and not CACHE_POLICY.levels


@pytest.mark.parametrize("length,chunk", [(1, 2), (7, 8), (64, 4), (64, 8), (100, 3), (999, 8)])
@pytest.mark.parametrize("reverse", [False, True])
def test_scan_states_solves_the_recurrence_in_both_directions(length, chunk, reverse):
    g = torch.Generator().manual_seed(length)
    x = torch.randn(2, length, 3, 5, generator=g, dtype=torch.float64)
    s = torch.rand(2, length, 5, generator=g, dtype=torch.float64)
    A2 = -torch.rand(3, 5, generator=g, dtype=torch.float64) * 2
    padded = -(-length // chunk) * chunk if length > chunk else length
    xp = torch.cat([x, x.new_zeros(2, padded - length, 3, 5)], dim=1)
    sp = torch.cat([s, s.new_zeros(2, padded - length, 5)], dim=1)
    got = scan_states_(xp, sp, A2, chunk, reverse)[:, :length]
    assert torch.allclose(got, loop_recurrence(x, s, A2, reverse), rtol=1e-12, atol=1e-12)


def test_scan_states_refuses_a_length_that_is_not_a_multiple_of_the_chunk():
    with pytest.raises(ValueError, match="multiple"):
        scan_states_(torch.zeros(1, 10, 2, 2), torch.zeros(1, 10, 2), torch.zeros(2, 2), chunk=4)


def test_channel_groups_cover_every_channel_once_within_the_budget():
    for batch, d_inner, per_channel, budget in [(8, 128, 100, 100 * 128 * 3), (2, 10, 7, 30), (3, 4, 50, 10)]:
        seen = torch.zeros(batch, d_inner, dtype=torch.int64)
        for b, d in channel_groups(batch, d_inner, per_channel, budget):
            seen[b, d] += 1
            size = (b.stop - b.start) * (d.stop - d.start)
            assert size * per_channel <= budget or size == 1
        assert (seen == 1).all()


@pytest.mark.parametrize("batch,d_inner,d_state,length,policy", [
    (1, 4, 3, 1, levels(8)),              # a single token
    (2, 8, 16, 37, levels(8)),            # odd L, batch > 1, one level + a ragged tail
    (3, 5, 4, 1000, levels(8)),           # three levels, padded
    (2, 3, 2, 101, levels(2, 7)),         # chunk 2 (7 levels), one channel per group
    (3, 6, 2, 333, levels(3, 333 * 2 * 4)),   # channel groups of 4 (d_inner split unevenly)
    (4, 3, 2, 200, levels(5, 200 * 2 * 3 * 3)),  # batch groups of 3 (batch split unevenly)
])
def test_levels_policy_forward_and_gradients_equal_the_reference_in_float64(batch, d_inner, d_state,
                                                                             length, policy):
    inputs = make_inputs(batch, d_inner, d_state, length, torch.float64, seed=length)
    want_y, want = outputs_and_gradients(selective_scan_reference, inputs)
    got_y, got = outputs_and_gradients(lambda **k: selective_scan_torch(**k, policy=policy), inputs)
    assert got_y.shape == want_y.shape
    assert relative_error(got_y, want_y) < 1e-12
    for key in KEYS:
        assert relative_error(got[key], want[key]) < 1e-10, key


def test_levels_policy_without_optional_arguments_equals_the_reference():
    inputs = make_inputs_without_optional_arguments()
    want = selective_scan_reference(**inputs)
    got = selective_scan_torch(**inputs, policy=levels(4))
    assert relative_error(got, want) < 1e-12


def test_levels_policy_stays_finite_and_exact_when_delta_times_a_is_huge():
    # |delta * A| up to ~1e4 per token: every decay and product of decays is <= 1, so nothing
    # overflows; in float32, forward and gradients stay at the reference's precision
    inputs = make_inputs(2, 8, 16, 700, torch.float32, delta_scale=30.0, a_scale=20.0, seed=3)
    want_y, want = outputs_and_gradients(selective_scan_reference, inputs)
    got_y, got = outputs_and_gradients(lambda **k: selective_scan_torch(**k, policy=levels(8)), inputs)
    assert torch.isfinite(got_y).all() and relative_error(got_y, want_y) < 2e-5
    for key in KEYS:
        assert torch.isfinite(got[key]).all(), key
        assert relative_error(got[key], want[key]) < 1e-4, key


def test_levels_policy_keeps_a_float32_state_for_bfloat16_inputs():
    inputs64 = make_inputs(2, 8, 16, 200, torch.float64, seed=4)
    inputs = {k: v.to(torch.bfloat16) for k, v in inputs64.items()}
    want_y, want = outputs_and_gradients(selective_scan_reference, inputs)   # fp32 state as well
    got_y, got = outputs_and_gradients(lambda **k: selective_scan_torch(**k, policy=levels(8)), inputs)
    assert got_y.dtype == torch.bfloat16
    assert relative_error(got_y, selective_scan_reference(**inputs64, delta_softplus=True)) < 3e-2
    # same bf16 inputs, both with a float32 state: only the bf16 rounding of the results differs
    assert relative_error(got_y, want_y) < 1e-2
    for key in KEYS:
        assert got[key].dtype == torch.bfloat16
        assert relative_error(got[key], want[key]) < 2e-2, key


def test_levels_policy_is_used_by_mamba_blocks_under_bfloat16_autocast():
    # the scan switches autocast off inside, so its state stays float32 on any device
    inputs = make_inputs(2, 8, 4, 150, torch.float32, seed=6)
    want = selective_scan_torch(**inputs, delta_softplus=True, policy=CACHE_POLICY)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = selective_scan_torch(**inputs, delta_softplus=True, policy=levels(8))
    assert got.dtype == torch.float32 and relative_error(got, want) < 1e-5


def test_levels_policy_gradients_match_the_cpu_policy_in_float32():
    inputs = make_inputs(2, 16, 16, 4099, torch.float32, seed=8)
    want_y, want = outputs_and_gradients(lambda **k: selective_scan_torch(**k, policy=CACHE_POLICY), inputs)
    got_y, got = outputs_and_gradients(lambda **k: selective_scan_torch(**k, policy=levels(8)), inputs)
    assert relative_error(got_y, want_y) < 1e-5
    for key in KEYS:
        assert relative_error(got[key], want[key]) < 1e-4, key


def test_levels_policy_refuses_a_chunk_below_two():
    inputs = make_inputs(1, 2, 2, 10, torch.float32)
    with pytest.raises(ValueError, match="chunk must be >= 2"):
        selective_scan_torch(**inputs, policy=levels(1))


@pytest.mark.gpu
def test_on_cuda_the_torch_backend_trains_with_the_levels_policy_and_equals_the_reference():
    inputs = {k: v.cuda() for k, v in make_inputs(2, 16, 16, 3000, torch.float32, seed=9).items()}
    want_y, want = outputs_and_gradients(selective_scan_reference, inputs)
    got_y, got = outputs_and_gradients(selective_scan_torch, inputs)   # policy_for(cuda)
    assert relative_error(got_y, want_y) < 2e-5
    for key in KEYS:
        assert relative_error(got[key], want[key]) < 1e-4, key


@pytest.mark.gpu
def test_on_cuda_channel_groups_and_many_levels_agree_with_the_cpu_policy_on_the_cpu():
    inputs = make_inputs(4, 64, 16, 5003, torch.float32, seed=10)
    want_y, want = outputs_and_gradients(lambda **k: selective_scan_torch(**k, policy=CACHE_POLICY), inputs)
    on_cuda = {k: v.cuda() for k, v in inputs.items()}
    policy = levels(8, 5008 * 16 * 24)          # groups of 24 channels of one batch element
    got_y, got = outputs_and_gradients(lambda **k: selective_scan_torch(**k, policy=policy), on_cuda)
    assert relative_error(got_y.cpu(), want_y) < 1e-5
    for key in KEYS:
        assert relative_error(got[key].cpu(), want[key]) < 1e-4, key
