"""`nnmamba evaluate`: a model's accuracy on its held-out cases, native / under random similarity
motions / degraded (thick slices, bias field, noise), beside its trivial baseline on the same inputs
(an atlas placed by coordinates; the template's landmark coordinates; the majority class), through
the same inference pipeline as `predict`.

    nnmamba evaluate --model brain-structures-seg --data data/prepared --transforms 4
    nnmamba evaluate --model models/afids-landmarks/model.json --json report.json --update-card
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
                        help="random similarity motions per held-out case, besides the case as it is (default 4)")
    parser.add_argument("--degraded", action=argparse.BooleanOptionalAction, default=True,
                        help="also evaluate thick-slice, bias-field and noisy copies of each case (default on)")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="score the task's trivial baseline on the same inputs (default on)")
    parser.add_argument("--cases", nargs="*", help="only these held-out cases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--tta", action="store_true",
                        help="mirror test-time augmentation over the card's axes, as predict --tta (default off)")
    parser.add_argument("--json", type=Path, help="write the full report here")
    parser.add_argument("--update-card", action="store_true",
                        help="write the summary into the card's 'accuracy' field (weights untouched)")


def _print_summary(report: dict) -> None:
    from nnmamba.tasks import get_task

    task = report["task"]
    definition = get_task(task)

    def headline(summary) -> str:
        return "-" if summary is None else definition.headline(summary)

    print(f"{report['model']} on held-out {', '.join(report['heldout'])}")
    print(f"  {report['protocol']}")
    for case, names in report.get("scored_labels", {}).items():
        print(f"  {case}: scored {len(names)} structures ({', '.join(names)})")
    print(f"  {'group':10s} {'model':34s} baseline")
    for group, figures in report["groups"].items():
        print(f"  {group:10s} {headline(figures['model']):34s} {headline(figures['baseline'])}")
    per_case_key, figure = definition.per_case_figure
    print(f"  by case ({figure}, model / baseline):")
    for group, figures in report["groups"].items():
        for case, value in figures["model"][per_case_key].items():
            base = None if figures["baseline"] is None else figures["baseline"][per_case_key][case]
            print(f"    {case:22s} {group:9s} {_figure(value)} / {_figure(base)}")
    if task == "segmentation":
        native = report["groups"]["native"]
        print("  native Dice by structure (model / baseline):")
        for name, v in native["model"]["per_label"].items():
            base = native["baseline"]["per_label"][name]["dice"] if native["baseline"] else None
            print(f"    {name:28s} {_figure(v['dice'])} / {_figure(base)}")


def _figure(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def update_card_accuracy(card_path: Path, report: dict) -> None:
    """Rewrite the card JSON with `accuracy` (the card's other fields and its weights stay)."""
    card = json.loads(card_path.read_text())
    card["accuracy"] = {key: report[key] for key in ("heldout", "ground_truth", "protocol", "baseline", "groups",
                                                     "scored_labels", "native") if key in report}
    card["accuracy"]["measured_by"] = "nnmamba evaluate"
    tmp = card_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    tmp.replace(card_path)


def run(args) -> int:
    from nnmamba.errors import NNMambaError
    from nnmamba.kernel_cache import use_kernel_cache
    from nnmamba.model_card import find_model

    use_kernel_cache()
    try:
        card = find_model(args.model)
        from nnmamba.evaluate.heldout import evaluate_model

        report = evaluate_model(card, args.data, transforms=args.transforms, degraded=args.degraded,
                                baseline=args.baseline, seed=args.seed, device=args.device, cases=args.cases, tta=args.tta,
                                progress=lambda m: print("  " + m, file=sys.stderr, flush=True))
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
