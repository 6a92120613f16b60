#!/usr/bin/env python
"""Draw a few training batches of a shipped recipe exactly as the trainer does and save a PNG of
their middle slices, with labels / landmark points overlaid: look before training on them.

    python scripts/show_training_batches.py --model brain-structures-seg --data data/prepared --out seg.png
    python scripts/show_training_batches.py --model afids-landmarks --samples 8 --device cuda --out lm.png

Each column is one sample (normalised image, as the network sees it); rows: axial, coronal and
sagittal middle slices through the patch (for landmarks: through the first point in the patch).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _problem(args):
    from nnmamba.train.data import read_manifest
    from nnmamba.train.loop import TrainConfig, _load_training_cases, _recipe
    from nnmamba.train.problems import make_problem
    from nnmamba.train.recipes import shipped_card

    card = shipped_card(args.model, read_manifest(args.data))
    config = TrainConfig(card=card, data_dir=args.data, out_dir=Path("."))
    cases, label_maps = _load_training_cases(config)
    return card, make_problem(card, cases, torch.device(args.device), seed=args.seed, recipe=_recipe(config),
                              label_maps=label_maps)


def _slices(volume: np.ndarray, centre) -> list:
    k, j, i = (int(round(c)) for c in centre)
    return [volume[k], volume[:, j], volume[:, :, i]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="brain-structures-seg, afids-landmarks or scan-type-cls")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "prepared")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    card, problem = _problem(args)
    x, target = problem.batch(args.samples)
    x = x.float().cpu().numpy()[:, 0]
    figure, axes = plt.subplots(3, args.samples, figsize=(2.2 * args.samples, 6.6), squeeze=False)
    for n in range(args.samples):
        centre = np.array(x.shape[1:]) / 2
        title = ""
        if card["task"] == "landmarks":
            centre = target[n, 0].cpu().numpy()[::-1]          # the first point, (i, j, k) -> (k, j, i)
        elif card["task"] == "classification":
            title = card["classes"][int(target[n])]["name"]
        for row, image in enumerate(_slices(x[n], centre)):
            axis = axes[row, n]
            axis.imshow(image, cmap="gray", origin="lower" if row else "upper")
            if card["task"] == "segmentation":
                labels = _slices(target[n].cpu().numpy(), centre)[row]
                shown = np.where((labels > 0) & (labels < 255), labels, np.nan)
                axis.imshow(shown, cmap="tab20", alpha=0.45, interpolation="nearest",
                            origin="lower" if row else "upper", vmin=1, vmax=20)
            axis.set_axis_off()
        axes[0, n].set_title(title, fontsize=8)
    figure.suptitle(f"{args.model}: {args.samples} generated / augmented training samples (seed {args.seed})")
    figure.tight_layout()
    figure.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
