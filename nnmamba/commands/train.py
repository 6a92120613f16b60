"""`nnmamba train`: train a model on data prepared by scripts/prepare_data.py.

    nnmamba train --model brain-structures-seg --data data/prepared --out runs/seg --minutes 5
    nnmamba train --card my_card.json --data data/prepared --out runs/mine --steps 2000
    torchrun --nproc_per_node 2 -m nnmamba train --model scan-type-cls ...   # DDP, one GPU each

Writes <out>/<name>/model.json (the card, with `training` filled in) + weights.safetensors,
<out>/checkpoint.safetensors/.json (resume with --resume) and <out>/rank<N>.json.
"""

from __future__ import annotations

import argparse
import math
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="a shipped model's recipe: brain-structures-seg, afids-landmarks, scan-type-cls")
    what.add_argument("--card", type=Path, help="a model card JSON to train (network, input, labels/landmarks/classes)")
    parser.add_argument("--data", type=Path, default=Path("data/prepared"),
                        help="prepared data folder (with manifest.json; default data/prepared)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for weights, card, checkpoints")
    parser.add_argument("--minutes", type=float, default=10.0, help="training time budget (default 10)")
    parser.add_argument("--run-minutes", type=float, default=None,
                        help="stop this process after this many minutes (one run of a series resumed with "
                             "--resume; --minutes and --steps count over the whole series)")
    parser.add_argument("--steps", type=int, default=1_000_000, help="stop after this many steps at the latest")
    parser.add_argument("--batch-size", type=int, default=2, help="samples per step and process (default 2)")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW peak learning rate (default 1e-3)")
    parser.add_argument("--warmup-steps", type=int, default=200,
                        help="linear learning-rate warm-up (default 200; repeated after resuming from "
                             "weights without optimiser moments)")
    parser.add_argument("--heldout-every", type=int, default=0,
                        help="score the held-out cases (native) every N steps and log it; a collapsed run "
                             "(segmentation Dice 0, classification loss at chance) stops itself (default 0: never)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="auto: bf16 autocast on CUDA, fp32 on CPU")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (torchrun: one GPU per process)")
    parser.add_argument("--scan-backend", default="auto", help="selective-scan backend (default auto)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="train in channels_last_3d or not (the execution plan's override; default: the "
                             "plan's, on for CUDA)")
    parser.add_argument("--sigma-mm", type=float, default=None,
                        help="landmark target Gaussian sigma (mm; default 8, two voxels of the 4 mm grid)")
    parser.add_argument("--channels", type=int, help="override the recipe's network width")
    parser.add_argument("--patch", type=int, nargs=3, metavar=("I", "J", "K"), help="override the patch size")
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("I", "J", "K"), help="override the spacing (mm)")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.*")
    parser.add_argument("--init-from", type=Path, help="start from these weights (a checkpoint folder or "
                        "weights .safetensors) with a fresh optimiser and schedule")
    parser.add_argument("--head-lr-multiplier", type=float, default=1.0,
                        help="learning-rate multiplier of the dense nets' output BatchNorm (default 1; "
                             "large values can kill the foreground scores behind the final ReLU)")
    parser.add_argument("--weight-average", type=float, default=0.0, metavar="DECAY",
                        help="check, save and ship an exponential moving average of the weights with this "
                             "decay (e.g. 0.999: about the last 1000 steps; default 0: the last step's weights)")
    parser.add_argument("--checkpoint-every", type=float, default=120.0, help="seconds between checkpoints")
    parser.add_argument("--log-every", type=int, default=20, help="steps per logged loss window (default 20)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")


def _card(args) -> dict:
    from nnmamba.model_card import validate_card_dict
    from nnmamba.train.data import read_manifest
    from nnmamba.train.recipes import SHIPPED, existing_card, shipped_card

    if args.card is not None:
        card = json.loads(args.card.read_text())
    else:
        if args.model not in SHIPPED:
            raise ValueError(f"unknown model recipe {args.model!r}; expected one of {', '.join(sorted(SHIPPED))} "
                             f"or --card <card.json>")
        models_dir = Path(__file__).resolve().parent.parent.parent / "models"
        card = shipped_card(args.model, read_manifest(args.data), existing_card(args.model, models_dir))
    if args.channels:
        card["hyperparameters"]["channels"] = args.channels
    if args.patch:
        card["input"]["patch_size"] = list(args.patch)
    if args.spacing:
        card["input"]["spacing_mm"] = list(args.spacing)
    validate_card_dict(card, where=str(args.card or args.model))
    return card


def _configure_cuda_for_training(device: str) -> None:
    """cuDNN autotuning for a CUDA run, set here at the command's edge (it is process-wide): every step
    has the same patch shape, so the algorithm search pays back at once (measured with channels-last
    training: benchmarks/RESULTS.md)."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def run(args) -> int:
    from nnmamba.errors import ModelError

    try:
        card = _card(args)
    except (ValueError, FileNotFoundError, ModelError, json.JSONDecodeError) as e:
        print(f"nnmamba train: {e}", file=sys.stderr)
        return 2
    if args.resume and not (args.out / "checkpoint.safetensors").is_file():
        print(f"nnmamba train: --resume given but {args.out} holds no checkpoint.safetensors", file=sys.stderr)
        return 2
    from nnmamba.kernel_cache import use_kernel_cache
    from nnmamba.train.loop import TrainConfig, train

    use_kernel_cache()
    _configure_cuda_for_training(args.device)
    config = TrainConfig(card=card, data_dir=args.data, out_dir=args.out, time_budget_s=args.minutes * 60,
                         max_steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed,
                         precision=args.precision, device=args.device, scan_backend=args.scan_backend,
                         channels_last=args.channels_last, sigma_mm=args.sigma_mm, checkpoint_every_s=args.checkpoint_every, resume=args.resume, log_every=args.log_every,
                         init_from=args.init_from, warmup_steps=args.warmup_steps,
                         heldout_every=args.heldout_every,
                         run_budget_s=math.inf if args.run_minutes is None else args.run_minutes * 60, output_norm_lr_multiplier=args.head_lr_multiplier,
                         weight_average_decay=args.weight_average,
                         progress_bar=not args.no_progress)
    try:
        result = train(config)
    except FileNotFoundError as e:
        print(f"nnmamba train: {e}", file=sys.stderr)
        return 2
    if result.card_path is not None:
        print(f"trained {card['name']}: {result.steps} steps in {result.elapsed_s:.0f} s, "
              f"loss {result.first_loss:.4f} -> {result.last_loss:.4f}; card {result.card_path}")
    return 0
