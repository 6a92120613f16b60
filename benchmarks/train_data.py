"""Time the training data path on the device: the label-map generator's batch, and its share of a
real training step.

    python benchmarks/train_data.py                      # CUDA if present: batch 2 x 128^3
    python benchmarks/train_data.py --device cpu --size 48 --repeats 3 --no-step

Prints one line per measurement (median of --repeats after --warmup): the generator at batch x
size^3 from a brain-sized synthetic FreeSurfer label map (head layers, 40 labels, every transform
on: affine, elastic, mirror, per-label contrast incl. CT, bias, gamma, resolution, noise), the real-
image augmenter, the landmark path (points moved + 32 heatmaps rendered), and, unless --no-step, a
full nnMambaSeg training step (bf16 autocast on CUDA, Adam) with its data time from the trainer's
own `StepClock`. Target (issue 13): data time <= 10 % of a step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nnmamba.train.problems import heatmaps_at, normalize_batch  # noqa: E402
from nnmamba.train.synth import ImageAugmenter, LabelMapGenerator, SpatialConfig, SynthConfig  # noqa: E402
from nnmamba.train.synth.head import add_head_layers  # noqa: E402
from nnmamba.train.synth.labels import AFIDS_LEFT_RIGHT_PAIRS, BRAIN_STRUCTURES  # noqa: E402

CODES = [2, 3, 41, 42, 4, 43, 5, 44, 7, 8, 46, 47, 10, 49, 11, 50, 12, 51, 13, 52, 14, 15, 16, 17, 53, 18, 54,
         24, 26, 58, 28, 60, 31, 63, 77, 85, 251, 253, 255]


def brain_like_map(shape, generator: torch.Generator, device) -> torch.Tensor:
    """(1, 1, *shape) FreeSurfer codes: an ellipsoid brain of nested shells and random blobs of the
    subcortical codes (a stand-in with a real label count and extent; timing only)."""
    k, j, i = torch.meshgrid(*[torch.linspace(-1, 1, s, device=device) for s in shape], indexing="ij")
    r = (i / 0.7) ** 2 + (j / 0.8) ** 2 + (k / 0.65) ** 2
    maps = torch.zeros(shape, dtype=torch.long, device=device)
    maps[r <= 1] = torch.where(i[r <= 1] < 0, 3, 42)
    maps[r <= 0.8] = torch.where(i[r <= 0.8] < 0, 2, 41)
    centres = torch.rand((len(CODES), 3), generator=generator, device=device) * 0.8 - 0.4
    for code, (ci, cj, ck) in zip(CODES, centres.tolist()):
        maps[(i - ci) ** 2 + (j - cj) ** 2 + (k - ck) ** 2 <= 0.006] = code
    return add_head_layers(maps[None, None], 2.0)


def timed(fn, device, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def training_step_share(args, device, maps) -> None:
    from nnmamba.networks import build_network
    from nnmamba.train import losses
    from nnmamba.train.timing import StepClock

    torch.manual_seed(0)
    classes = len(BRAIN_STRUCTURES) + 1
    model = build_network("nnMambaSeg", scan_backend=args.scan_backend, in_ch=1, channels=args.channels,
                          blocks=3, number_classes=classes).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    config = SynthConfig(spatial=SpatialConfig(rotate_degrees=20, scale=0.2, translate_voxels=8,
                                               elastic_std_voxels=2, flip_probability=0.5),
                         contrast_probabilities=(0.6, 0.15, 0.1, 0.15))
    generator = LabelMapGenerator(maps, [c for c, _ in BRAIN_STRUCTURES], (args.size,) * 3, config)
    g = torch.Generator(device=device).manual_seed(1)
    cases = torch.zeros(args.batch, dtype=torch.long, device=device)
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    clock = StepClock(device)
    for n in range(args.warmup + args.repeats):
        start = clock.synchronise()
        batch = generator(cases, g)
        x = normalize_batch(batch.image, {"method": "zscore", "mask": "nonzero"})
        data_end = clock.synchronise()
        with autocast:
            out = model(x)
        loss = losses.dice_ce_loss(out, batch.labels, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        float(loss.detach())
        if n >= args.warmup:
            clock.add(data_end - start, time.perf_counter() - start)
    t = clock.totals()
    print(f"training step nnMambaSeg(ch {args.channels}, blocks 3, {classes} classes) batch {args.batch} x {args.size}^3, "
          f"scan {args.scan_backend}: step {t['step_ms_per_step']:.1f} ms, data {t['data_ms_per_step']:.1f} ms "
          f"= {100 * t['data_share']:.1f} % of the step (target <= 10 %)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=128, help="patch edge (voxels)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-step", action="store_true", help="skip the training-step measurement")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--scan-backend", default="auto")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {name}, torch {torch.__version__}, batch {args.batch} x {args.size}^3")
    g = torch.Generator(device=device).manual_seed(0)
    edge = int(args.size * 1.15)
    maps = brain_like_map((edge, edge + 8, edge), g, device)
    cases = torch.zeros(args.batch, dtype=torch.long, device=device)
    full = SynthConfig(spatial=SpatialConfig(rotate_degrees=20, scale=0.2, translate_voxels=8, elastic_std_voxels=2,
                                             flip_probability=0.5), contrast_probabilities=(0.6, 0.15, 0.1, 0.15),
                       resolution_probability=1.0)
    generator = LabelMapGenerator(maps, [c for c, _ in BRAIN_STRUCTURES], (args.size,) * 3, full)
    ms = timed(lambda: generator(cases, g), device, args.repeats, args.warmup)
    print(f"label-map generator (all transforms, resolution always on): {ms:.2f} ms per batch")
    images = torch.rand((1, 1) + tuple(maps.shape[2:]), generator=g, device=device) * 100
    augmenter = ImageAugmenter(images, torch.zeros(1, device=device), torch.zeros(1, dtype=torch.bool, device=device),
                               (args.size,) * 3, full, point_pairs=AFIDS_LEFT_RIGHT_PAIRS, point_count=32)
    points = torch.rand((args.batch, 32, 3), generator=g, device=device) * args.size

    def landmarks():
        batch = augmenter(cases, g, points=points)
        normalize_batch(batch.image, {"method": "zscore", "mask": "nonzero"})
        heatmaps_at(batch.points, (args.size,) * 3, 2.0)

    ms = timed(lambda: augmenter(cases, g), device, args.repeats, args.warmup)
    print(f"real-image augmenter: {ms:.2f} ms per batch")
    ms = timed(landmarks, device, args.repeats, args.warmup)
    print(f"landmark batch (augment + 32 points moved + 32 heatmaps): {ms:.2f} ms per batch")
    if not args.no_step:
        training_step_share(args, device, maps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
