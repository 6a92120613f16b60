"""Sliding-window stitching against whole-volume passes of networks whose output is known."""

from __future__ import annotations

import threading

import pytest
import torch

from nnmamba.errors import Cancelled
from nnmamba.inference.sliding_window import center_crop_or_pad, forward_mirrored, sliding_window


def pointwise(seed: int = 0, channels_in: int = 2, channels_out: int = 3) -> torch.nn.Module:
    """A 1x1x1 convolution: exactly translation-equivariant, no border effects."""
    torch.manual_seed(seed)
    return torch.nn.Conv3d(channels_in, channels_out, kernel_size=1).eval()


@pytest.mark.parametrize("tile_batch", [1, 3])
@pytest.mark.parametrize("overlap", [0.0, 0.5, 0.8])
def test_sliding_window_over_a_volume_larger_than_the_patch_equals_a_whole_volume_pass(tile_batch, overlap):
    torch.manual_seed(1)
    image = torch.randn(2, 40, 70, 37)
    net = pointwise()
    got = sliding_window(net, image, (32, 32, 32), 3, overlap=overlap, tile_batch=tile_batch)
    with torch.no_grad():
        expected = net(image[None])[0]
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_a_fixed_batch_fills_the_last_batch_to_the_same_shape_and_keeps_the_result():
    torch.manual_seed(2)
    image = torch.randn(2, 40, 70, 37)      # padded to 48 x 80 x 48: 2 x 4 x 2 = 16 tiles of 32^3
    net = pointwise()
    batches = []

    def network(x):
        batches.append(x.shape[0])
        return net(x)

    got = sliding_window(network, image, (32, 32, 32), 3, overlap=0.5, tile_batch=3, fixed_batch=True)
    assert batches == [3] * 6               # 5 full batches, then 1 tile filled up to 3
    with torch.no_grad():
        expected = net(image[None])[0]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    batches.clear()
    sliding_window(network, image, (32, 32, 32), 3, overlap=0.5, tile_batch=3)
    assert batches == [3] * 5 + [1]         # without it the last batch is shorter


def test_a_volume_smaller_than_the_patch_is_padded_and_cropped_back():
    image = torch.randn(1, 9, 20, 5)
    got = sliding_window(torch.nn.Identity(), image, (32, 32, 32), 1)
    torch.testing.assert_close(got, image)


def test_tiles_the_network_sees_are_multiples_of_16():
    seen = []

    def network(x):
        seen.append(tuple(x.shape[2:]))
        return x

    sliding_window(network, torch.randn(1, 20, 50, 33), (32, 32, 64), 1, overlap=0.5)
    assert seen and all(all(n % 16 == 0 for n in shape) for shape in seen)
    assert all(shape[1] == 32 for shape in seen)   # the 50-voxel axis is tiled with the patch


def test_mirror_tta_averages_the_network_over_every_flip():
    torch.manual_seed(2)
    net = torch.nn.Conv3d(1, 1, kernel_size=3, padding=1).eval()
    image = torch.randn(1, 16, 16, 16)
    got = sliding_window(net, image, (16, 16, 16), 1, mirror_axes=(0, 1, 2))
    with torch.no_grad():
        expected = torch.zeros_like(image)
        for dims in [(), (4,), (3,), (2,), (4, 3), (4, 2), (3, 2), (4, 3, 2)]:
            x = torch.flip(image[None], dims) if dims else image[None]
            y = net(x)
            expected += (torch.flip(y, dims) if dims else y)[0]
        expected /= 8
        plain = net(image[None])[0]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, plain, atol=1e-3)   # the kernel is not symmetric: TTA changes it


def test_mirror_tta_leaves_a_mirror_symmetric_network_unchanged():
    net = pointwise(channels_in=1, channels_out=2)
    image = torch.randn(1, 20, 24, 40)
    with_tta = sliding_window(net, image, (16, 16, 32), 2, mirror_axes=(0, 1, 2))
    without = sliding_window(net, image, (16, 16, 32), 2)
    torch.testing.assert_close(with_tta, without, rtol=1e-5, atol=1e-5)


def test_mirroring_only_the_card_axes_flips_only_those_dims():
    calls = []

    def network(x):
        calls.append(x.clone())
        return x

    tile = torch.arange(16.0 ** 3).reshape(1, 1, 16, 16, 16)
    forward_mirrored(network, tile, mirror_axes=(0,))   # axis i -> the last tensor dim
    assert len(calls) == 2
    torch.testing.assert_close(calls[1], torch.flip(tile, (4,)))


def test_a_left_right_mirror_gives_the_paired_channels_back_in_their_places():
    # Channel 0 answers the first half of axis i, channel 1 the second, channel 2 all of it: a mirror
    # along i turns the first half into the second, so the network is left-right equivariant up to the
    # swap 0 <-> 1, as a lateralised network trained with Left/Right names swapped is.
    def halves(x):
        first = (torch.arange(x.shape[4]) < x.shape[4] // 2).float()
        return torch.cat([x * first, x * (1 - first), x], dim=1)

    image = torch.randn(1, 16, 16, 32)
    plain = sliding_window(halves, image, (16, 16, 32), 3)
    swapped = sliding_window(halves, image, (16, 16, 32), 3, mirror_axes=(0, 1), mirror_order=(1, 0, 2))
    torch.testing.assert_close(swapped, plain)
    unswapped = sliding_window(halves, image, (16, 16, 32), 3, mirror_axes=(0,))
    assert not torch.allclose(unswapped[:2], plain[:2], atol=1e-3)   # without the swap the halves blur


def test_progress_is_reported_per_tile_and_cancel_stops_between_tiles():
    image = torch.randn(1, 64, 64, 64)
    events = []
    cancel = threading.Event()

    def progress(done, total):
        events.append((done, total))
        if done >= 2:
            cancel.set()

    with pytest.raises(Cancelled):
        sliding_window(torch.nn.Identity(), image, (32, 32, 32), 1, tile_batch=1,
                       progress=progress, cancel=cancel)
    assert events == [(1, 27), (2, 27)]


def test_center_crop_or_pad_keeps_the_middle_and_pads_with_the_minimum():
    image = torch.arange(2 * 4 * 6 * 8, dtype=torch.float32).reshape(2, 4, 6, 8)
    out = center_crop_or_pad(image, (6, 6, 4))
    assert out.shape == (2, 6, 6, 4)
    torch.testing.assert_close(out[:, 1:5, :, :], image[:, :, :, 2:6])
    assert out[0, 0].max() == image[0].min()


def test_the_tile_grid_the_predictor_plans_with_is_the_one_the_sliding_window_runs():
    from nnmamba.inference.sliding_window import tile_grid

    image = torch.randn(1, 40, 70, 20)
    shapes = []

    def network(x):
        shapes.append(tuple(x.shape))
        return torch.zeros(x.shape[0], 2, *x.shape[2:])

    patch, tiles = tile_grid(image.shape[1:], (32, 48, 32), overlap=0.5)
    sliding_window(network, image, (32, 48, 32), 2, overlap=0.5, tile_batch=1)
    assert len(shapes) == len(tiles)
    assert {s[2:] for s in shapes} == {patch} == {(32, 48, 32)[:2] + (32,)}
