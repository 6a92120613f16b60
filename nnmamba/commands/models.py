"""`nnmamba models`: list the model cards that are found (no torch needed)."""

from __future__ import annotations

import argparse
import json

from nnmamba.commands._pipeline import report_errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the cards as JSON")
    parser.add_argument("--task", choices=["segmentation", "landmarks", "classification"])


@report_errors
def run(args) -> int:
    from nnmamba.model_card import list_models, models_dirs

    cards = [c for c in list_models() if args.task is None or c.task == args.task]
    if args.json:
        print(json.dumps([dict(c.to_dict(), path=str(c.path)) for c in cards], indent=2))
        return 0
    if not cards:
        print("no model cards found in " + (", ".join(map(str, models_dirs())) or "any folder")
              + "; set NNMAMBA_MODELS_DIR")
        return 0
    rows = [("name", "task", "network", "outputs", "spacing mm", "weights", "card")]
    for c in cards:
        rows.append((c.name, c.task, c.network, str(len(c.output_names)),
                     "x".join(f"{s:g}" for s in c.spacing_mm), "trained" if c.trained else "UNTRAINED",
                     str(c.path)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    return 0
