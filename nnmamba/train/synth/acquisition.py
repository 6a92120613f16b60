"""What a scanner does to an image, per sample of a batch: bias field, gamma, resolution / slice
thickness, noise. Each op draws its own per-sample parameters from the caller's generator and
touches the image only (labels and points never move here).

Why not MONAI's RandBiasField / RandGaussianNoise / RandGaussianSmooth / RandSimulateLowResolution:
they draw one parameter set per call for one (C, ...) sample (RandBiasField even evaluates its
polynomial in numpy), so a batch would be a Python loop with host round trips; here every op is
one or a few batched tensor ops on the image's device, with a different parameter per sample.

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.rand(2, 1, 16, 16, 16)
    >>> bias_field(x, 0.7, g).shape == x.shape
    True
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from nnmamba.train.synth.constants import constant
from nnmamba.train.synth.upsample import upsample_aligned


def _per_sample(batch: int, generator: torch.Generator, device, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    return low + (high - low) * torch.rand(batch, generator=generator, device=device)


def bias_field(image: torch.Tensor, std_max: float, generator: torch.Generator, grid: int = 4) -> torch.Tensor:
    """image: (B, C, k, j, i) -> image * exp(b), b a smooth field: N(0, s) on a `grid`^3 lattice,
    upsampled trilinearly, s ~ U(0, std_max) per sample (SynthSeg: std_max 0.7, a 4^3 lattice)."""
    batch = image.shape[0]
    std = _per_sample(batch, generator, image.device, 0.0, std_max).view(batch, 1, 1, 1, 1)
    coarse = std * torch.randn((batch, 1, grid, grid, grid), generator=generator, device=image.device)
    field = upsample_aligned(coarse.view(batch, grid, grid, grid, 1), image.shape[2:])   # one channel: a view
    return image * field.view(batch, 1, *image.shape[2:]).exp()


def gamma(image: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """image: (B, C, k, j, i) -> per sample, min + range * ((x - min) / range) ** exp(N(0, std))."""
    batch = image.shape[0]
    flat = image.reshape(batch, -1)
    low = flat.min(1).values.view(batch, 1, 1, 1, 1)
    span = (flat.max(1).values.view(batch, 1, 1, 1, 1) - low).clamp_min(1e-6)
    exponent = (std * torch.randn(batch, generator=generator, device=image.device)).exp().view(batch, 1, 1, 1, 1)
    return low + span * ((image - low) / span).clamp(0, 1) ** exponent


def noise(image: torch.Tensor, std_max, generator: torch.Generator) -> torch.Tensor:
    """image: (B, C, k, j, i) -> image + N(0, s), s ~ U(0, std_max) per sample (image units);
    std_max a float or a (B,) tensor."""
    batch = image.shape[0]
    std = (std_max * torch.rand(batch, generator=generator, device=image.device)).view(batch, 1, 1, 1, 1)
    return image + std * torch.randn(image.shape, generator=generator, device=image.device)


def random_voxel_sizes(batch: int, voxel_mm: float, max_mm: float, thick_max_mm: float, probability: float,
                       generator: torch.Generator, device) -> torch.Tensor:
    """(B, 3) simulated acquisition voxel sizes (mm) per axis (k, j, i): with `probability`, each axis
    U(voxel, max_mm), and half of those get one random axis U(voxel, thick_max_mm) (thick slices);
    otherwise the working voxel itself (no change)."""
    sizes = voxel_mm + (max(max_mm, voxel_mm) - voxel_mm) * torch.rand((batch, 3), generator=generator, device=device)
    thick = voxel_mm + (max(thick_max_mm, voxel_mm) - voxel_mm) * torch.rand(batch, generator=generator, device=device)
    axis = torch.randint(0, 3, (batch,), generator=generator, device=device)
    has_thick = torch.rand(batch, generator=generator, device=device) < 0.5
    # a comparison, not F.one_hot, which checks its indices' range with .item() (on the CPU)
    one_hot = (axis[:, None] == torch.arange(3, device=device)) & has_thick[:, None]
    sizes = torch.where(one_hot, thick[:, None].expand(batch, 3), sizes)
    applied = torch.rand(batch, generator=generator, device=device) < probability
    return torch.where(applied[:, None], sizes, torch.full_like(sizes, voxel_mm))


def _blur_kernel(sigma: torch.Tensor, radius: int, dtype: torch.dtype) -> torch.Tensor:
    """(B,) sigmas (voxels; 0: none) -> (B, 2 radius + 1) normalised Gaussian taps (a unit tap for 0)."""
    offsets = torch.arange(-radius, radius + 1, device=sigma.device, dtype=dtype)
    safe = sigma.clamp_min(1e-3)[:, None]
    kernel = torch.exp(-0.5 * (offsets[None] / safe) ** 2)
    kernel = torch.where(sigma[:, None] > 0, kernel, (offsets[None] == 0).to(dtype))
    return kernel / kernel.sum(1, keepdim=True)


def _blur_axis(image: torch.Tensor, sigma: torch.Tensor, axis: int, radius: int) -> torch.Tensor:
    """Gaussian blur along spatial `axis` (0, 1, 2 = k, j, i) with a sigma (voxels) per sample:
    image (B, C, k, j, i), sigma (B,) (0: unchanged), kernel radius fixed by the caller (so no host sync
    to find the largest sigma). One grouped convolution for the whole batch."""
    batch, channels = image.shape[:2]
    kernel = _blur_kernel(sigma, radius, image.dtype).repeat_interleave(channels, 0)
    shape = [1, 1, 1]
    shape[axis] = 2 * radius + 1
    weight = kernel.view(batch * channels, 1, *shape)
    pad = [0, 0, 0, 0, 0, 0]
    pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
    x = F.pad(image.reshape(1, batch * channels, *image.shape[2:]), pad, mode="replicate")
    if image.device.type == "cpu":
        return _shifted_sum(x, kernel, axis, image.shape[2 + axis]).view(image.shape)
    return F.conv3d(x, weight, groups=batch * channels).view(image.shape)


def _shifted_sum(padded: torch.Tensor, kernel: torch.Tensor, axis: int, size: int) -> torch.Tensor:
    """The blur as a weighted sum of shifted views: padded (1, BC, ...) along `axis`, kernel (BC, taps).

    On the CPU only: oneDNN has no fast path for a one-channel, 13-tap 3-D convolution (measured
    at 112 x 128 x 112, one thread: conv3d 57-78 ms per axis, this 11-22 ms); on CUDA the one
    grouped convolution is one launch where this would be 2 x taps."""
    view = (1, kernel.shape[0], 1, 1, 1)
    out = padded.narrow(2 + axis, 0, size) * kernel[:, 0].view(view)
    for offset in range(1, kernel.shape[1]):
        out = out + padded.narrow(2 + axis, offset, size) * kernel[:, offset].view(view)
    return out


def _linear_along(image: torch.Tensor, positions: torch.Tensor, axis: int) -> torch.Tensor:
    """Linear interpolation along spatial `axis` at per-sample positions (B, n) (voxels, clamped)."""
    size = image.shape[2 + axis]
    positions = positions.clamp(0, size - 1)
    low = positions.floor().long().clamp(max=size - 1)
    high = (low + 1).clamp(max=size - 1)
    weight = positions - low.to(positions.dtype)
    view = [image.shape[0], 1, 1, 1, 1]
    view[2 + axis] = size
    expand = list(image.shape)

    def take(index):
        return image.gather(2 + axis, index.view(view).expand(expand))

    return take(low) + weight.view(view) * (take(high) - take(low))


def resolution_reference(image: torch.Tensor, voxel_mm: float, sizes_mm: torch.Tensor, generator: torch.Generator,
                         max_size_mm: float) -> torch.Tensor:
    """The readable form of `resolution` (its oracle in the tests): same signature, same draws, the
    same result; the three steps its docstring names (blur, lattice sampling, linear interpolation
    back) run one after the other here, per axis."""
    largest = max(max_size_mm / voxel_mm, 1.0)
    factor = (sizes_mm / voxel_mm).clamp(1.0, largest)            # (B, 3)
    radius = int(math.ceil(3 * 0.42 * largest))
    out = image
    for axis in range(3):
        f = factor[:, axis]
        sigma = torch.where(f > 1.0 + 1e-3, 0.42 * f, torch.zeros_like(f))
        out = _blur_axis(out, sigma, axis, radius)
        size = out.shape[2 + axis]
        x = torch.arange(size, device=out.device, dtype=out.dtype)[None]
        phase = f[:, None] * torch.rand((out.shape[0], 1), generator=generator, device=out.device)
        cell = torch.floor((x - phase) / f[:, None])
        low = cell * f[:, None] + phase
        weight = ((x - low) / f[:, None]).clamp(0, 1)
        at_low = _linear_along(out, low, axis)
        at_high = _linear_along(out, low + f[:, None], axis)
        view = [out.shape[0], 1, 1, 1, 1]
        view[2 + axis] = size
        w = weight.view(view)
        resampled = at_low + w * (at_high - at_low)
        unchanged = (f <= 1.0 + 1e-3).view(-1, 1, 1, 1, 1)
        out = torch.where(unchanged, out, resampled)
    return out


def _lattice(factor: torch.Tensor, size: int, generator: torch.Generator, dtype: torch.dtype) -> tuple:
    """The acquisition lattices of the three axes: factor (B, 3) their spacings in working voxels ->
    (low (B, 3, size), weight (B, 3, size)): working voxel x lies between lattice points low and
    low + factor, at `weight` from low, each lattice shifted by a random phase per sample and axis."""
    x = torch.arange(size, device=factor.device, dtype=dtype)
    f = factor[..., None]
    # (3, B) drawn axis after axis: the reference's per-axis draws, in its order
    phase = f * torch.rand((3, factor.shape[0]), generator=generator, device=factor.device).T[..., None]
    low = torch.floor((x - phase) / f) * f + phase
    return low, ((x - low) / f).clamp(0, 1)


def _interpolation_rows(positions: torch.Tensor, last: torch.Tensor, size: int) -> torch.Tensor:
    """positions (B, 3, m) voxels along each axis, last (3, 1) each axis' last voxel -> (B, 3, m, size):
    the weight that linear interpolation at each position (clamped to its axis) gives each voxel."""
    positions = torch.minimum(positions.clamp_min(0), last)
    low = positions.floor()
    weight = (positions - low)[..., None]
    index = torch.arange(size, device=positions.device, dtype=positions.dtype)
    high = torch.minimum(low + 1, last)
    return (index == low[..., None]) * (1 - weight) + (index == high[..., None]) * weight


@functools.lru_cache(maxsize=16)
def _replicate_taps(sizes: tuple, radius: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(3, taps, n, n), n the largest of `sizes`: tap t of axis a reads voxel clamp(x + t - radius)
    of that axis (replicate padding); rows and columns beyond an axis' size stay 0."""
    with torch.inference_mode(False):
        size = max(sizes)
        taps = torch.zeros((3, 2 * radius + 1, size, size), device=device, dtype=dtype)
        for axis, n in enumerate(sizes):
            x = torch.arange(n, device=device)
            read = (x[None, :] + torch.arange(-radius, radius + 1, device=device)[:, None]).clamp(0, n - 1)
            taps[axis, :, :n, :n] = (read[..., None] == x).to(dtype)
        return taps


def _axis_operators(factor: torch.Tensor, sizes: tuple, radius: int, generator: torch.Generator,
                    dtype: torch.dtype) -> torch.Tensor:
    """factor (B, 3) -> (B, 3, n, n), n the largest axis: per sample and axis, blur by the slice
    profile, sample on the lattice and interpolate back as one matrix (all three steps are linear
    along the axis); axis a's operator is the top-left sizes[a] x sizes[a] block."""
    size = max(sizes)
    sigma = torch.where(factor > 1.0 + 1e-3, 0.42 * factor, torch.zeros_like(factor))
    kernel = _blur_kernel(sigma.reshape(-1), radius, dtype).view(*factor.shape, -1)
    blur = torch.einsum("bat,atxy->baxy", kernel, _replicate_taps(sizes, radius, factor.device, dtype))
    low, weight = _lattice(factor, size, generator, dtype)
    last = constant(tuple((n - 1.0,) for n in sizes), factor.device, dtype)
    rows = _interpolation_rows(torch.cat([low, low + factor[..., None]], -1), last, size)   # (B, 3, 2n, n)
    weight = weight[..., None]
    return (rows[:, :, :size] * (1 - weight) + rows[:, :, size:] * weight) @ blur


def _along_axis(operator: torch.Tensor, image: torch.Tensor, axis: int) -> torch.Tensor:
    """operator (B, n, n) applied along spatial `axis` (0, 1, 2 = k, j, i) of image (B, C, k, j, i)."""
    batch, channels, size = image.shape[0], image.shape[1], image.shape[2 + axis]
    before = channels * math.prod(image.shape[2:2 + axis])
    x = image.reshape(batch, before, size, -1)
    return torch.einsum("bxy,bpym->bpxm", operator, x).reshape(image.shape)


def resolution(image: torch.Tensor, voxel_mm: float, sizes_mm: torch.Tensor, generator: torch.Generator,
               max_size_mm: float) -> torch.Tensor:
    """Simulate acquiring at voxel sizes (B, 3) mm (axes k, j, i) and resampling back to `voxel_mm`.

    Per axis: a Gaussian blur of the slice profile (FWHM = the acquired size, sigma = 0.42 x the
    factor in working voxels), then sampling on a lattice of that spacing (a random phase per
    sample) and linear interpolation back, which is what a thick-slice scan resampled to a fine
    grid looks like (steps between slices). Axes at the working size are left untouched (exactly).
    `max_size_mm` bounds sizes_mm and fixes the blur kernel's size, so the op needs no host sync.
    image: (B, C, k, j, i).

    The steps and draws of `resolution_reference`, with each axis' three linear steps folded into one
    small matrix per sample, built for the three axes at once and applied as one batched matmul per
    axis: the volume is read once per axis, not by a blur and four gathers, in a few dozen launches.
    """
    largest = max(max_size_mm / voxel_mm, 1.0)
    factor = (sizes_mm / voxel_mm).clamp(1.0, largest)            # (B, 3)
    radius = int(math.ceil(3 * 0.42 * largest))
    sizes = tuple(image.shape[2:])
    operators = _axis_operators(factor, sizes, radius, generator, image.dtype)
    out = image
    for axis, n in enumerate(sizes):
        unchanged = (factor[:, axis] <= 1.0 + 1e-3).view(-1, 1, 1, 1, 1)
        out = torch.where(unchanged, out, _along_axis(operators[:, axis, :n, :n], out, axis))
    return out
