"""nnMamba networks: shapes, input checks, registry, MICCSS batching and a short training run."""

from __future__ import annotations

import pytest
import torch

from nnmamba.networks import build_network, network_names, set_scan_backend
from nnmamba.networks.miccss import MambaLayer
from nnmamba.ssm.mamba import Mamba


def small(name, **extra):
    hyper = {"nnMambaSeg": dict(in_ch=1, channels=8, blocks=2, number_classes=3),
             "nnMambaLandmark": dict(in_ch=1, channels=8, blocks=2, number_landmarks=4),
             "nnMambaEncoder": dict(in_ch=1, channels=8, blocks=2, number_classes=3)}[name]
    hyper.update(extra)
    torch.manual_seed(0)
    return build_network(name, **hyper)


def test_registry_names_the_three_nnmamba_networks():
    assert {"nnMambaSeg", "nnMambaLandmark", "nnMambaEncoder"} <= set(network_names())


@pytest.mark.parametrize("name,channels", [("nnMambaSeg", 3), ("nnMambaLandmark", 4)])
def test_dense_networks_keep_non_cubic_sizes_and_batch(name, channels):
    model = small(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 32, 48, 64))
    assert out.shape == (2, channels, 32, 48, 64)
    assert torch.isfinite(out).all()


def test_batch_items_are_independent_in_eval_mode():
    model = small("nnMambaSeg").eval()
    x = torch.randn(2, 1, 16, 32, 16)
    with torch.no_grad():
        both = model(x)
        second = model(x[1:])
    assert torch.allclose(both[1:], second, atol=1e-5)


def test_encoder_gives_one_logit_row_per_item_for_any_size():
    model = small("nnMambaEncoder").eval()
    with torch.no_grad():
        assert model(torch.randn(3, 1, 20, 24, 28)).shape == (3, 3)


@pytest.mark.parametrize("name", ["nnMambaSeg", "nnMambaLandmark"])
def test_dense_networks_refuse_sizes_not_divisible_by_16_naming_the_nearest_valid(name):
    model = small(name).eval()
    with pytest.raises(ValueError, match=r"divisible by 16, got 33x48x64 \(nearest valid: 33 -> 32 or 48\)"):
        model(torch.randn(1, 1, 33, 48, 64))
    with pytest.raises(ValueError, match=r"8 -> 16"):
        model(torch.randn(1, 1, 8, 16, 16))


def test_networks_refuse_wrong_rank_and_channel_count():
    model = small("nnMambaSeg")
    with pytest.raises(ValueError, match="5-D tensor"):
        model(torch.randn(1, 32, 32, 32))
    with pytest.raises(ValueError, match="built for 1 input channel"):
        model(torch.randn(1, 2, 16, 16, 16))


def test_build_network_refuses_unknown_names_and_hyperparameters():
    with pytest.raises(ValueError, match="unknown network 'nnMambaXL'; expected one of"):
        build_network("nnMambaXL")
    with pytest.raises(ValueError, match="nnMambaSeg does not take number_landmarks"):
        build_network("nnMambaSeg", number_landmarks=3)
    with pytest.raises(ValueError, match="channels must be an integer >= 1, got 0"):
        build_network("nnMambaSeg", channels=0)
    with pytest.raises(ValueError, match="unknown scan backend"):
        build_network("nnMambaSeg", scan_backend="cuda-magic")


def test_build_network_sets_the_scan_backend_of_every_mamba_block():
    model = build_network("nnMambaSeg", channels=4, blocks=2, number_classes=2, scan_backend="reference")
    blocks = [m for m in model.modules() if isinstance(m, Mamba)]
    assert len(blocks) == 3 and all(b.scan_backend == "reference" for b in blocks)
    set_scan_backend(model, "torch")
    assert all(b.scan_backend == "torch" for b in blocks)


def test_landmark_network_has_one_mamba_layer_in_the_first_stage_only():
    model = small("nnMambaLandmark", blocks=3)
    layers = {id(m) for m in model.modules() if isinstance(m, MambaLayer)}
    assert len(layers) == 1
    assert model.layer1[1].mamba_layer is model.layer1[2].mamba_layer is not None
    assert all(block.mamba_layer is None for block in list(model.layer2) + list(model.layer3))


def test_batched_miccss_equals_four_separate_mamba_calls():
    torch.manual_seed(0)
    layer = MambaLayer(8, scan_backend="reference").double().eval()
    x = torch.randn(2, 8, 4, 6, 5, dtype=torch.float64)
    with torch.no_grad():
        batched = layer(x)
        layer.batch_directions = False
        separate = layer(x)
    assert torch.allclose(batched, separate, rtol=0, atol=1e-12)


def test_miccss_flips_tokens_and_channels_as_upstream_does():
    torch.manual_seed(1)
    layer = MambaLayer(4, scan_backend="torch").double().eval()
    x_flat = torch.randn(1, 10, 4, dtype=torch.float64)
    m = layer.mamba
    want = (m(x_flat) + m(x_flat.flip([2])).flip([2]) + m(x_flat.flip([1])).flip([1])
            + m(x_flat.flip([1, 2])).flip([1, 2])) / 4
    with torch.no_grad():
        assert torch.allclose(layer._miccss(x_flat), want, atol=1e-12)


@pytest.mark.parametrize("name", ["nnMambaSeg", "nnMambaEncoder"])
def test_a_few_adam_steps_lower_the_loss_and_gradients_reach_the_ssm(name):
    # channels 8: with 4 the encoder's 4-unit MLP hidden layer can start all-dead (zero gradients)
    model = small(name, channels=8, scan_backend="torch").train()
    torch.manual_seed(0)
    x = torch.randn(2, 1, 16, 16, 16)
    if name == "nnMambaSeg":
        target = (x[:, 0] > 0).long() + (x[:, 0] > 1).long()
        loss_fn = torch.nn.CrossEntropyLoss()
    else:
        target = torch.tensor([0, 2])
        loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(6):
        torch.manual_seed(0)  # same dropout mask every step: the loss is one fixed function
        optimizer.zero_grad()
        loss = loss_fn(model(x), target)
        loss.backward()
        losses.append(loss.item())
        optimizer.step()
    assert losses[-1] < losses[0]
    ssm = next(m for m in model.modules() if isinstance(m, Mamba))
    for param in (ssm.A_log, ssm.D, ssm.dt_proj.weight, ssm.x_proj.weight):
        assert param.grad is not None and param.grad.abs().sum() > 0


def test_onednn_conv3d_matches_torch_conv3d_values_and_gradients():
    from nnmamba.networks.blocks import Conv3d

    torch.manual_seed(0)
    ours = Conv3d(8, 6, kernel_size=3, stride=2, padding=1)
    plain = torch.nn.Conv3d(8, 6, kernel_size=3, stride=2, padding=1)
    plain.load_state_dict(ours.state_dict())
    x = torch.randn(1, 8, 10, 12, 14, requires_grad=True)
    y_ours, y_plain = ours(x), plain(x)
    assert torch.allclose(y_ours, y_plain, atol=1e-5)
    (g_ours,) = torch.autograd.grad(y_ours.square().sum(), ours.weight)
    (g_plain,) = torch.autograd.grad(y_plain.square().sum(), plain.weight)
    assert torch.allclose(g_ours, g_plain, rtol=1e-4, atol=1e-4)
    x64 = x.detach().double()
    assert torch.equal(ours.double()(x64), plain.double()(x64))  # float64: PyTorch's own kernel


def test_encoder_head_width_and_dropout_keep_upstream_module_names_so_either_loads_strictly():
    upstream = small("nnMambaEncoder", channels=4)
    ours = small("nnMambaEncoder", channels=4, head_width=64, head_dropout=0.0)
    assert sorted(ours.state_dict()) == sorted(upstream.state_dict())
    assert upstream.mlp[0].out_features == 4 and upstream.mlp[2].p == 0.5   # upstream: width = channels
    assert ours.mlp[0].out_features == 64 and ours.mlp[2].p == 0.0 and ours.mlp[3].in_features == 64
    small("nnMambaEncoder", channels=4).load_state_dict(upstream.state_dict(), strict=True)


def test_encoder_refuses_a_head_dropout_outside_zero_to_one_and_a_zero_width():
    with pytest.raises(ValueError, match=r"head_dropout must be a number in \[0, 1\), got 1.0"):
        small("nnMambaEncoder", head_dropout=1.0)
    with pytest.raises(ValueError, match="head_width must be an integer >= 1, got 0"):
        small("nnMambaEncoder", head_width=0)


def test_a_wide_head_without_dropout_learns_three_classes_of_a_tiny_problem():
    # three classes told apart by texture scale, as scan types differ by their intensity structure
    torch.manual_seed(0)
    model = small("nnMambaEncoder", channels=4, head_width=32, head_dropout=0.0, scan_backend="torch").train()

    def samples(count):
        target = torch.arange(count) % 3
        noise = torch.randn(count, 1, 16, 16, 16)
        smooth = torch.nn.functional.avg_pool3d(noise, 3, stride=1, padding=1) * 3
        x = torch.where((target == 0).view(-1, 1, 1, 1, 1), noise, smooth)
        x = torch.where((target == 2).view(-1, 1, 1, 1, 1), smooth.abs() * 2 - 1, x)
        return x, target

    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        x, target = samples(6)
        loss = torch.nn.functional.cross_entropy(model(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x, target = samples(30)
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert torch.nn.functional.cross_entropy(logits, target).item() < 0.5
    assert (logits.argmax(1) == target).float().mean().item() >= 0.8
