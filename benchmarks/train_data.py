"""Time the training data path on the device: each shipped model's own recipe batches (exactly what
`nnmamba train` draws), the synthetic generator / augmenter alone, and their share of a training step.

    python benchmarks/train_data.py                      # CUDA if present; all three shipped recipes
    python benchmarks/train_data.py --device cpu --size 48 --repeats 3 --no-step --models none

Per shipped model (brain-structures-seg, afids-landmarks, scan-type-cls; --models picks), from the
prepared data (--data, default data/prepared): the problem `nnmamba train` builds (its card, recipe,
cases and label maps, `make_problem`), timed as the trainer times it (`problem.batch` + the plan's
layout between two `StepClock` syncs) -> "data ms per step"; unless --no-step, the trainer's own step
(the card's network under the trainer's plan and autocast, the problem's loss, Adam, grad clipping)
-> step ms and the data share. Then the parts alone (median of --repeats after --warmup): the
generator at batch x size^3 from a brain-sized synthetic FreeSurfer label map (every transform on),
the real-image augmenter, the landmark path (points moved + 32 target Gaussians), and, unless --no-step, an
nnMambaSeg step on generated batches. Target (issue 13): data time <= 10 % of a step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nnmamba.train.losses import gaussian_distributions  # noqa: E402
from nnmamba.train.problems import normalize_batch  # noqa: E402
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


SHIPPED_MODELS = ("brain-structures-seg", "afids-landmarks", "scan-type-cls")


def recipe_problem(name: str, data_dir: Path, device, batch: int):
    """The card, the problem and the trainer config `nnmamba train --model name` would build."""
    from nnmamba.train.data import read_manifest
    from nnmamba.train.loop import TrainConfig, _load_training_cases, _recipe
    from nnmamba.train.problems import make_problem
    from nnmamba.train.recipes import existing_card, shipped_card

    models_dir = Path(__file__).resolve().parent.parent / "models"
    card = shipped_card(name, read_manifest(data_dir), existing_card(name, models_dir))
    config = TrainConfig(card=card, data_dir=data_dir, out_dir=Path("unused"), batch_size=batch,
                         device=str(device))
    cases, label_maps = _load_training_cases(config)
    problem = make_problem(card, cases, device, seed=config.seed, sigma_mm=config.sigma_mm,
                           recipe=_recipe(config), label_maps=label_maps)
    return card, problem, config


def recipe_timing(name: str, args, device) -> None:
    """One line: the recipe's data ms per step and, with a step, the step ms and the data share."""
    from nnmamba.execution_plan import to_plan_layout
    from nnmamba.networks import build_network
    from nnmamba.train.loop import _autocast, _training_plan, optimisation_step
    from nnmamba.train.timing import StepClock

    card, problem, config = recipe_problem(name, Path(args.data), device, args.batch)
    config.scan_backend = args.scan_backend
    model = optimizer = None
    if not args.no_step:
        torch.manual_seed(0)
        model = build_network(card["network"], scan_backend=args.scan_backend, **card["hyperparameters"]).to(device)
        plan = _training_plan(model, config, device)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        autocast = _autocast(config.precision, device)[0]
        model.train()
    clock = StepClock(device)
    for n in range(args.warmup + args.repeats):
        start = clock.synchronise()
        x, target = problem.batch(args.batch)
        if model is not None:
            x = to_plan_layout(x, plan)
        data_end = clock.synchronise()
        if model is not None:   # the trainer's own step (loop.train), less logging and checkpoints
            float(optimisation_step(model, model, problem, optimizer, x, target, autocast))
        if n >= args.warmup:
            clock.add(data_end - start, time.perf_counter() - start)
    t = clock.totals()
    patch = "x".join(str(p) for p in card["input"]["patch_size"])
    line = f"recipe {name} ({card['task']}, batch {args.batch} x {patch}): data {t['data_ms_per_step']:.1f} ms per step"
    if model is not None:
        line += (f"; step {t['step_ms_per_step']:.1f} ms ({card['network']}, scan {args.scan_backend}) -> data "
                 f"{100 * t['data_share']:.1f} % of the step (target <= 10 %)")
    print(line, flush=True)


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
    parser.add_argument("--data", default=str(Path(__file__).resolve().parent.parent / "data" / "prepared"),
                        help="prepared data directory (scripts/prepare_data.py) for the recipe timings")
    parser.add_argument("--models", default=",".join(SHIPPED_MODELS),
                        help="comma-separated shipped models whose recipe batches are timed, or 'none'")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True   # as `nnmamba train` sets it (commands/train.py)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {name}, torch {torch.__version__}, batch {args.batch}")
    models = [] if args.models == "none" else [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(SHIPPED_MODELS))
    if unknown:
        parser.error(f"--models: unknown {unknown}; expected some of {list(SHIPPED_MODELS)} or 'none'")
    for model_name in models:
        recipe_timing(model_name, args, device)
    print(f"parts alone, batch {args.batch} x {args.size}^3:")
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
        gaussian_distributions(batch.points, (args.size,) * 3, 2.0)

    ms = timed(lambda: augmenter(cases, g), device, args.repeats, args.warmup)
    print(f"real-image augmenter: {ms:.2f} ms per batch")
    ms = timed(landmarks, device, args.repeats, args.warmup)
    print(f"landmark batch (augment + 32 points moved + 32 target Gaussians): {ms:.2f} ms per batch")
    if not args.no_step:
        training_step_share(args, device, maps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
