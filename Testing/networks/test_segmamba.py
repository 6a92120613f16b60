"""SegMamba: reproduces the vectors made by the public SegMamba code, and its scan orders are right."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from segmamba_training_case import (assert_cards_accept_the_networks, losses_before_and_after, train_few_steps,
                                    tumour_card)

from nnmamba.model_card import read_card
from nnmamba.models import load_model
from nnmamba.networks import build_network
from nnmamba.ssm.backends import get_backend
from nnmamba.networks.segmamba import (SegMamba, ToMambaLayer, TriOrientedMamba, from_slice_order,
                                       to_slice_order)

VECTORS = Path(__file__).parent / "vectors"
CPU_BACKENDS = ["reference", "torch"]
# upstream constructor argument -> ours
RENAMES = {"in_chans": "in_ch", "out_chans": "number_classes"}


def load_vector(name: str) -> dict:
    with np.load(VECTORS / name) as data:
        return {key: data[key] for key in data.files}


def state_dict_of(vector: dict) -> dict:
    return {key[len("param/"):]: torch.from_numpy(value.astype(np.float64))
            for key, value in vector.items() if key.startswith("param/")}


def config_of(vector: dict) -> dict:
    return ast.literal_eval(str(vector["config"]))


def assert_matches(y: torch.Tensor, expected: np.ndarray, tolerance: float = 1e-5) -> None:
    expected = torch.from_numpy(expected.astype(np.float64))
    assert y.shape == expected.shape
    scale = expected.abs().max().item()
    error = (y.double() - expected).abs().max().item()
    assert error <= tolerance * scale, f"max error {error:.3g} > {tolerance:g} * max|y| = {tolerance * scale:.3g}"


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_tri_oriented_mamba_reproduces_the_upstream_v3_mamba(backend):
    vector = load_vector("segmamba_mamba.npz")
    config = config_of(vector)
    assert config.pop("bimamba_type") == "v3"
    block = TriOrientedMamba(**config, scan_backend=backend).to(torch.float64).eval()
    block.load_state_dict(state_dict_of(vector), strict=True)
    with torch.no_grad():
        y = block(torch.from_numpy(vector["input/x"].astype(np.float64)))
    assert_matches(y, vector["output/y"])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_segmamba_reproduces_the_upstream_network(backend):
    vector = load_vector("segmamba.npz")
    config = {RENAMES.get(key, key): value for key, value in config_of(vector).items()}
    net = build_network("SegMamba", scan_backend=backend, **config).to(torch.float64).eval()
    assert {m.scan_backend for m in net.modules() if isinstance(m, TriOrientedMamba)} == {backend}
    net.load_state_dict(state_dict_of(vector), strict=True)
    with torch.no_grad():
        y = net(torch.from_numpy(vector["input/x"].astype(np.float64)))
    assert_matches(y, vector["output/y"])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_segmamba_in_float32_matches_the_upstream_network_to_5e_5(backend):
    vector = load_vector("segmamba.npz")
    config = {RENAMES.get(key, key): value for key, value in config_of(vector).items()}
    net = build_network("SegMamba", scan_backend=backend, **config).eval()
    net.load_state_dict({k: v.float() for k, v in state_dict_of(vector).items()}, strict=True)
    with torch.no_grad():
        y = net(torch.from_numpy(vector["input/x"].astype(np.float32)))
    assert_matches(y, vector["output/y"], tolerance=5e-5)   # measured 6.7e-6


def test_every_segmamba_parameter_changes_the_vector_output():
    """The vector is a real check: perturbing any one parameter tensor moves the output."""
    vector = load_vector("segmamba_mamba.npz")
    config = config_of(vector)
    config.pop("bimamba_type")
    block = TriOrientedMamba(**config, scan_backend="torch").to(torch.float64).eval()
    params = state_dict_of(vector)
    x = torch.from_numpy(vector["input/x"].astype(np.float64))
    block.load_state_dict(params)
    with torch.no_grad():
        base = block(x)
        for key, value in params.items():
            block.load_state_dict({**params, key: value * 1.01 + 0.01})
            assert (block(x) - base).abs().max() > 1e-6, f"{key} has no effect on the output"


def test_slice_order_visits_token_i_of_every_slice_before_token_i_plus_one():
    tokens = torch.arange(12)
    ordered = to_slice_order(tokens, 3)      # 3 groups of 4: [0..3], [4..7], [8..11]
    assert ordered.tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    assert torch.equal(from_slice_order(ordered, 3), tokens)
    # upstream's own formulation
    upstream = torch.stack(tokens.chunk(3, dim=-1), dim=-1).flatten(-2)
    assert torch.equal(ordered, upstream)


def _dependence(block: TriOrientedMamba, suffix: str, order, length: int, probe: int) -> torch.Tensor:
    """Which output positions of one direction change when input token `probe` changes."""
    torch.manual_seed(0)
    xz = torch.randn(1, 2 * block.d_inner, length, dtype=torch.float64)
    fn = get_backend("reference").fn
    to, back = order
    with torch.no_grad():
        base = back(block.direction(to(xz), suffix, fn))
        moved = xz.clone()
        moved[..., probe] += 1.0
        changed = back(block.direction(to(moved), suffix, fn))
    return (changed - base).abs().amax(dim=(0, 1)) > 0


def test_each_direction_of_the_tri_oriented_scan_is_causal_in_its_own_order():
    block = TriOrientedMamba(d_model=8, d_state=4, nslices=4).to(torch.float64)
    length, probe = 16, 6          # 4 groups of 4 tokens; token 6 = token 2 of group 1
    identity = (lambda t: t, lambda t: t)
    reverse = (lambda t: t.flip(-1), lambda t: t.flip(-1))
    slices = (lambda t: to_slice_order(t, 4), lambda t: from_slice_order(t, 4))
    forward_hits = _dependence(block, "", identity, length, probe)
    assert forward_hits.nonzero().flatten().tolist() == list(range(probe, length))
    backward_hits = _dependence(block, "_b", reverse, length, probe)
    assert backward_hits.nonzero().flatten().tolist() == list(range(0, probe + 1))
    # slice order position of token 6 is 2 * 4 + 1 = 9: tokens at slice positions >= 9 are hit
    slice_hits = _dependence(block, "_s", slices, length, probe)
    position = torch.arange(length).reshape(4, 4).t().flatten()    # slice order -> token index
    expected = sorted(position[9:].tolist())
    assert slice_hits.nonzero().flatten().tolist() == expected


def test_segmamba_refuses_inputs_whose_stage_tokens_do_not_split_into_its_slices():
    net = SegMamba(in_ch=1, number_classes=2, depths=(1, 1, 1, 1), feat_size=(48, 8, 8, 8), hidden_size=8)
    with pytest.raises(ValueError, match="num_slices\\[2\\]=16"):
        net(torch.zeros(1, 1, 16, 16, 16))
    with pytest.raises(ValueError, match="divisible by 16"):
        net(torch.zeros(1, 1, 32, 32, 24))
    with pytest.raises(ValueError, match="4 integers"):
        SegMamba(depths=(2, 2, 2))


def test_segmamba_output_has_the_input_size_and_one_channel_per_class():
    net = SegMamba(in_ch=2, number_classes=3, depths=(1, 1, 1, 1), feat_size=(48, 8, 8, 8),
                   hidden_size=8, num_slices=(8, 4, 2, 1)).eval()
    with torch.no_grad():
        y = net(torch.randn(1, 2, 32, 16, 16))
    assert y.shape == (1, 3, 32, 16, 16)


def test_tom_layer_adds_its_input():
    layer = ToMambaLayer(8, num_slices=2).eval()
    for parameter in layer.mamba.out_proj.parameters():
        torch.nn.init.zeros_(parameter)
    x = torch.randn(1, 8, 2, 2, 4)
    assert torch.equal(layer(x), x)



def test_segmamba_trains_through_the_training_code_on_a_real_mr_tumour_and_reloads(tmp_path, monkeypatch):
    assert_cards_accept_the_networks()
    # 16 x 16 x 32 patch: stage i has 8 / 2^i slices of the first axis, one scan group each
    card = tumour_card("SegMamba", depths=[1, 1, 1, 1], feat_size=[8, 16, 16, 16], hidden_size=16,
                       num_slices=[8, 4, 2, 1])
    result = train_few_steps(tmp_path, card)
    assert result.steps == 6
    assert math.isfinite(result.first_loss) and math.isfinite(result.last_loss)
    before, after = losses_before_and_after(tmp_path, card, result)
    assert after < before - 0.02, (before, after)
    net = load_model(read_card(result.card_path), scan_backend="torch")
    assert isinstance(net, SegMamba)
    with torch.no_grad():
        assert net(torch.randn(1, 1, 16, 16, 32)).shape == (1, 2, 16, 16, 32)
