"""`nnmamba evaluate` prints the model beside its baseline per group and writes those figures, the
protocol and the held-out cases into the card with --update-card."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evaluate"))
from evaluate_helpers import write_cards, write_prepared  # noqa: E402

from nnmamba.cli import main  # noqa: E402


def table(out: str) -> dict:
    """The printed table's rows: group -> line (the lines after the 'group  model  baseline' header)."""
    lines = out.splitlines()
    start = next(n for n, line in enumerate(lines) if line.split()[:3] == ["group", "model", "baseline"])
    rows = {}
    for line in lines[start + 1:]:
        if line.split()[:1] not in (["native"], ["motion"], ["degraded"]):
            break
        rows[line.split()[0]] = line
    return rows


def test_evaluate_prints_model_and_baseline_per_group_and_updates_the_card(tmp_path, capsys):
    data = write_prepared(tmp_path / "prepared")
    cards = write_cards(tmp_path / "cards")
    card_dir = tmp_path / "under-test"
    shutil.copytree(next(p.parent for p in cards.rglob("model.json") if "tiny-seg" in p.read_text()), card_dir)
    card_path = card_dir / "model.json"
    report_path = tmp_path / "report.json"

    code = main(["evaluate", "--model", str(card_path), "--data", str(data), "--transforms", "1",
                 "--json", str(report_path), "--update-card"])

    assert code == 0
    out = capsys.readouterr().out
    lines = table(out)
    assert set(lines) == {"native", "motion", "degraded"}
    assert lines["native"].count("Dice") == 2                         # model and baseline side by side
    assert lines["native"].rstrip().endswith("Dice 1.000")            # the baseline drew the ground truth
    accuracy = json.loads(card_path.read_text())["accuracy"]
    assert set(accuracy["groups"]) == {"native", "motion", "degraded"}
    assert accuracy["groups"]["native"]["baseline"]["mean_dice"] == 1.0
    assert accuracy["heldout"] == {"blobs": "synthetic head"} and "similarity" in accuracy["protocol"]
    assert accuracy["measured_by"] == "nnmamba evaluate"
    assert json.loads(report_path.read_text())["rows"][0]["variant"] == "native"


def test_evaluate_without_degraded_or_baseline_prints_neither(tmp_path, capsys):
    data = write_prepared(tmp_path / "prepared")
    cards = write_cards(tmp_path / "cards")
    card_path = next(p for p in cards.rglob("model.json") if "tiny-landmarks" in p.read_text())

    code = main(["evaluate", "--model", str(card_path), "--data", str(data), "--transforms", "1",
                 "--no-degraded", "--no-baseline"])

    assert code == 0
    lines = table(capsys.readouterr().out)
    assert set(lines) == {"native", "motion"}
    assert lines["native"].count("MRE") == 1 and lines["native"].rstrip().endswith("-")
