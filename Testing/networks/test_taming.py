"""Taming Mambas variants: the scan order of every direction, the averaging over axis orders, the
placement of the Mamba layers, and shapes."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from segmamba_training_case import (assert_cards_accept_the_networks, losses_before_and_after, train_few_steps,
                                    tumour_card)

from nnmamba.model_card import read_card
from nnmamba.models import load_model

from nnmamba.networks.taming import (MULTI_SCAN_ORDERS, BiMambaTransformerBlock, BiSegMamba,
                                     MambaTransformerBlock, MultiAxisMambaLayer, MultiSegMamba,
                                     SegMambaSkip, TamingSegMamba, TokenMambaLayer, from_tokens, to_tokens)

VARIANTS = [TamingSegMamba, BiSegMamba, SegMambaSkip, MultiSegMamba]
SPATIAL = (3, 4, 5)          # distinct sizes, so a wrong axis order cannot go unnoticed


def small(cls, **kw):
    torch.manual_seed(0)
    return cls(in_ch=1, number_classes=3, channels=4, n_stages=3, blocks=1, d_state=4, **kw).double().eval()


def raster_index(voxel, spatial, order):
    """Position of `voxel` (k, j, i) in the raster order over axes `order` (slowest first)."""
    index = 0
    for axis in order:
        index = index * spatial[axis] + voxel[axis]
    return index


def changed_voxels(fn, x: torch.Tensor, voxel) -> torch.Tensor:
    """Boolean (k, j, i) map of where fn's output changes when the input at `voxel` changes."""
    with torch.no_grad():
        base = fn(x)
        moved = x.clone()
        # a change that is not constant over channels (a LayerNorm would remove a constant one)
        moved[(slice(None), slice(None)) + tuple(voxel)] += torch.linspace(-1.0, 2.0, x.shape[1], dtype=x.dtype)
        return ((fn(moved) - base).abs().amax(dim=(0, 1)) > 0)


def expected_after(voxel, spatial, order) -> torch.Tensor:
    """Map of the voxels at or after `voxel` in the raster order `order`."""
    position = raster_index(voxel, spatial, order)
    grid = torch.zeros(spatial, dtype=torch.bool)
    for v in itertools.product(*(range(s) for s in spatial)):
        grid[v] = raster_index(v, spatial, order) >= position
    return grid


def test_tokens_round_trip_for_every_axis_order():
    x = torch.randn(2, 3, *SPATIAL)
    for order in itertools.permutations(range(3)):
        tokens = to_tokens(x, order)
        assert tokens.shape == (2, 3 * 4 * 5, 3)
        assert torch.equal(from_tokens(tokens, SPATIAL, order), x)
        # token t is the voxel at raster position t of that order
        voxel = (2, 1, 3)
        assert torch.equal(tokens[:, raster_index(voxel, SPATIAL, order)], x[:, :, 2, 1, 3])


def test_unidirectional_layer_sees_only_voxels_before_it_in_raster_order():
    torch.manual_seed(0)
    layer = TokenMambaLayer(4, d_state=4, bidirectional=False).double()
    x = torch.randn(1, 4, *SPATIAL, dtype=torch.float64)
    voxel = (1, 2, 2)
    hits = changed_voxels(layer, x, voxel)
    assert torch.equal(hits, expected_after(voxel, SPATIAL, (0, 1, 2)))


def test_bidirectional_block_has_one_causal_and_one_anti_causal_branch():
    torch.manual_seed(0)
    block = BiMambaTransformerBlock(4, d_state=4).double()
    x = torch.randn(1, 10, 4, dtype=torch.float64)

    def hits(fn):
        with torch.no_grad():
            moved = x.clone()
            moved[:, 6] += torch.linspace(-1.0, 2.0, x.shape[2], dtype=x.dtype)
            return ((fn(moved) - fn(x)).abs().amax(dim=(0, 2)) > 0).nonzero().flatten().tolist()

    assert hits(block.forward_scan) == list(range(6, 10))
    assert hits(block.reversed_scan) == list(range(0, 7))
    assert hits(block) == list(range(10))
    with torch.no_grad():
        expected = block.norm(block.fwd_mamba(x) + block.bwd_mamba(x.flip(1)).flip(1))
        assert torch.allclose(block(x), expected)


def test_multi_axis_layer_scans_four_axis_orders_each_causal_in_its_own_order():
    assert MULTI_SCAN_ORDERS == ((0, 1, 2), (0, 2, 1), (1, 0, 2), (2, 0, 1))
    torch.manual_seed(0)
    layer = MultiAxisMambaLayer(4, d_state=4).double()
    x = torch.randn(1, 4, *SPATIAL, dtype=torch.float64)
    voxel = (1, 2, 2)
    for index, order in enumerate(layer.orders):
        mamba = layer.mambas[index]

        def forward_branch(t, order=order, mamba=mamba):
            return from_tokens(mamba.forward_scan(to_tokens(t, order)), SPATIAL, order)

        def reversed_branch(t, order=order, mamba=mamba):
            return from_tokens(mamba.reversed_scan(to_tokens(t, order)), SPATIAL, order)

        after = expected_after(voxel, SPATIAL, order)
        assert torch.equal(changed_voxels(forward_branch, x, voxel), after), order
        before = ~after
        before[voxel] = True
        assert torch.equal(changed_voxels(reversed_branch, x, voxel), before), order


def test_multi_axis_layer_averages_its_four_branches_per_voxel():
    torch.manual_seed(0)
    layer = MultiAxisMambaLayer(4, d_state=4).double()
    x = torch.randn(2, 4, *SPATIAL, dtype=torch.float64)
    with torch.no_grad():
        branches = [from_tokens(layer.mambas[n](to_tokens(x, order)), SPATIAL, order)
                    for n, order in enumerate(MULTI_SCAN_ORDERS)]
        assert torch.allclose(layer(x), sum(branches) / 4)
        # every branch matters: the four are not the same function
        assert min((a - b).abs().max() for a, b in itertools.combinations(branches, 2)) > 1e-3


@pytest.mark.parametrize("cls,layer_type,bidirectional", [
    (TamingSegMamba, TokenMambaLayer, False), (BiSegMamba, TokenMambaLayer, True),
    (SegMambaSkip, TokenMambaLayer, True), (MultiSegMamba, MultiAxisMambaLayer, True)])
def test_every_encoder_stage_has_the_variants_mamba_layer(cls, layer_type, bidirectional):
    net = small(cls)
    assert len(net.mamba_layers) == len(net.stages) == 3
    for layer in net.mamba_layers:
        assert type(layer) is layer_type
        if layer_type is TokenMambaLayer:
            expected = BiMambaTransformerBlock if bidirectional else MambaTransformerBlock
            assert type(layer.mamba) is expected


def test_skip_variant_keeps_the_encoder_path_convolutional_and_feeds_mamba_features_to_the_decoder():
    net = small(SegMambaSkip)
    x = torch.randn(1, 1, 8, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        skips = net.encode(x)
        h = net.stem(x)
        for stage, mamba, skip in zip(net.stages, net.mamba_layers, skips):
            h = stage(h)                       # the main path never goes through Mamba
            assert torch.allclose(skip, mamba(h))


def test_stage_variants_feed_the_mamba_output_to_the_next_stage():
    for cls in (TamingSegMamba, BiSegMamba, MultiSegMamba):
        net = small(cls)
        x = torch.randn(1, 1, 8, 8, 8, dtype=torch.float64)
        with torch.no_grad():
            skips = net.encode(x)
            h = net.stem(x)
            for stage, mamba, skip in zip(net.stages, net.mamba_layers, skips):
                h = mamba(stage(h))
                assert torch.allclose(skip, h)


@pytest.mark.parametrize("cls", VARIANTS)
def test_variant_output_has_the_input_size_and_one_channel_per_class(cls):
    net = small(cls)
    with torch.no_grad():
        y = net(torch.randn(2, 1, 8, 12, 16, dtype=torch.float64))
    assert y.shape == (2, 3, 8, 12, 16)


@pytest.mark.parametrize("cls", VARIANTS)
def test_variant_refuses_sizes_its_downsampling_cannot_take(cls):
    net = small(cls)
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.zeros(1, 1, 8, 8, 10, dtype=torch.float64))
    with pytest.raises(ValueError, match="blocks must be"):
        cls(n_stages=3, blocks=(1, 2))
    with pytest.raises(ValueError, match="channels must be a positive integer"):
        cls(channels=0)


def test_state_size_follows_the_authors_rule_unless_given():
    net = TamingSegMamba(channels=8, n_stages=3, blocks=1, max_channels=320)
    assert [layer.mamba.mamba.d_state for layer in net.mamba_layers] == [8, 16, 32]
    net = MultiSegMamba(channels=32, n_stages=3, blocks=1)
    assert [layer.mambas[0].fwd_mamba.mamba.d_state for layer in net.mamba_layers] == [32, 64, 64]
    net = BiSegMamba(channels=8, n_stages=2, blocks=1, d_state=5)
    assert {layer.mamba.fwd_mamba.mamba.d_state for layer in net.mamba_layers} == {5}



@pytest.mark.parametrize("cls", [TamingSegMamba, BiSegMamba, SegMambaSkip,
                                 pytest.param(MultiSegMamba, marks=pytest.mark.slow)])
def test_variant_trains_through_the_training_code_on_a_real_mr_tumour_and_reloads(cls, tmp_path, monkeypatch):
    assert_cards_accept_the_networks()
    card = tumour_card(cls.__name__, patch_ijk=(16, 16, 16), channels=4, n_stages=3, blocks=1, d_state=4)
    result = train_few_steps(tmp_path, card)
    assert result.steps == 6
    assert math.isfinite(result.first_loss) and math.isfinite(result.last_loss)
    before, after = losses_before_and_after(tmp_path, card, result)
    assert after < before - 0.02, (before, after)
    net = load_model(read_card(result.card_path), scan_backend="torch")
    assert type(net) is cls
    with torch.no_grad():
        assert net(torch.randn(1, 1, 16, 16, 16)).shape == (1, 2, 16, 16, 16)
