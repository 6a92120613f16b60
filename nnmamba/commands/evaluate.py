"""`nnmamba evaluate`: a model's accuracy on its held-out cases (Dice + HD95 per label, radial
error per landmark in mm, accuracy / AUC), through the same inference pipeline as `predict`.

    nnmamba evaluate --model brain-structures-seg --data data/prepared --transforms 4
    nnmamba evaluate --model models/afids-landmarks.json --json report.json --update-card
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model name or card path")
    parser.add_argument("--data", type=Path, default=Path("data/prepared"),
                        help="prepared data folder (scripts/prepare_data.py; default data/prepared)")
    parser.add_argument("--transforms", type=int, default=4,
                        help="random rigid motions per held-out case, besides the case as it is (default 4)")
    parser.add_argument("--cases", nargs="*", help="only these held-out cases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--json", type=Path, help="write the full report here")
    parser.add_argument("--update-card", action="store_true",
                        help="write the summary into the card's 'accuracy' field (weights untouched)")


def _print_summary(report: dict) -> None:
    s = report["summary"]
    print(f"{report['model']} on held-out {', '.join(report['heldout'])}")
    print(f"  {report['protocol']}")
    if report["task"] == "segmentation":
        for name, v in s["per_label"].items():
            hd = "n/a" if v["hd95_mm"] is None else f"{v['hd95_mm']:.1f} mm"
            print(f"  {name:28s} Dice {v['dice']:.3f}  HD95 {hd}" + (f"  missed {v['missed']}x" if v["missed"] else ""))
        print(f"  mean Dice {s['mean_dice']:.3f}, mean HD95 {s['mean_hd95_mm']:.1f} mm")
    elif report["task"] == "landmarks":
        worst = sorted(s["per_landmark_mm"].items(), key=lambda kv: -kv[1])[:5]
        print(f"  MRE {s['mre_mm']:.2f} mm (median {s['median_mm']:.2f}, sd {s['sd_mm']:.2f}; "
              f"{100 * s['within_4mm']:.0f}% within 4 mm); worst: "
              + ", ".join(f"{k} {v:.1f}" for k, v in worst))
    else:
        auc = ", ".join(f"{k} {v:.3f}" for k, v in s["auc"].items() if v is not None)
        print(f"  accuracy {s['accuracy']:.3f} over {len(report['rows'])} inputs; AUC {auc or 'n/a'}")
        for case, acc in s["per_case_accuracy"].items():
            print(f"    {case:16s} {acc:.2f}")


def update_card_accuracy(card_path: Path, report: dict) -> None:
    """Rewrite the card JSON with `accuracy` (the card's other fields and its weights stay)."""
    card = json.loads(card_path.read_text())
    card["accuracy"] = {"heldout": report["heldout"], "ground_truth": report["ground_truth"],
                        "protocol": report["protocol"], "measured_by": "nnmamba evaluate",
                        **report["summary"]}
    tmp = card_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    tmp.replace(card_path)


def run(args) -> int:
    from nnmamba.errors import NNMambaError
    from nnmamba.models import find_model

    try:
        card = find_model(args.model)
        from nnmamba.evaluate.heldout import evaluate_model

        report = evaluate_model(card, args.data, transforms=args.transforms, seed=args.seed, device=args.device,
                                cases=args.cases, progress=lambda m: print("  " + m, file=sys.stderr, flush=True))
    except (NNMambaError, ValueError, FileNotFoundError) as e:
        print(f"nnmamba evaluate: {e}", file=sys.stderr)
        return 2
    _print_summary(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if args.update_card:
        update_card_accuracy(card.path, report)
        print(f"  wrote accuracy into {card.path}")
    return 0
