"""`evaluate_model` runs the real Predictor on every variant of a tiny held-out case and reports the
model beside its baseline per group; where the baseline produced the ground truth it scores perfectly
at the native pose and loses under motion."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnmamba.evaluate.heldout import GROUPS, evaluate_model
from nnmamba.model_card import find_model
from nnmamba.train.data import load_cases

TRANSFORMS = 2


@pytest.fixture(scope="module")
def reports(tiny_prepared, tiny_cards_dir):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NNMAMBA_MODELS_DIR", str(tiny_cards_dir))
        return {task: evaluate_model(find_model(name), tiny_prepared, transforms=TRANSFORMS)
                for task, name in (("segmentation", "tiny-seg"), ("landmarks", "tiny-landmarks"),
                                   ("classification", "tiny-cls"))}


@pytest.mark.parametrize("task", ["segmentation", "landmarks", "classification"])
def test_the_report_has_every_group_with_the_model_and_its_baseline(reports, task):
    report = reports[task]
    assert list(report["groups"]) == list(GROUPS)
    assert [r["variant"] for r in report["rows"]] == (["native"] + [f"moved{n + 1}" for n in range(TRANSFORMS)]
                                                      + ["thick_slices", "bias_field", "noise"])
    for figures in report["groups"].values():
        assert figures["model"] is not None and figures["baseline"] is not None
    assert report["baseline"] and report["baseline"] in report["protocol"]
    assert "similarity" in report["protocol"] and "thick slices" in report["protocol"]


def test_the_atlas_baseline_that_drew_the_ground_truth_scores_dice_one_natively_and_less_under_motion(reports):
    groups = reports["segmentation"]["groups"]
    assert groups["native"]["baseline"]["mean_dice"] == pytest.approx(1.0)
    assert groups["degraded"]["baseline"]["mean_dice"] == pytest.approx(1.0)   # it ignores the image
    assert groups["motion"]["baseline"]["mean_dice"] < 0.9
    assert set(groups["native"]["baseline"]["per_label"]) == {"Left thalamus", "Brainstem"}
    assert reports["segmentation"]["scored_labels"] == {"blobs": ["Left thalamus", "Brainstem"]}


def test_the_segmentation_figures_are_the_predictors_own(reports, tiny_prepared, tiny_cards):
    from nnmamba import metrics
    from nnmamba.inference import InferenceOptions, Predictor

    card = find_model("tiny-seg")
    case = load_cases(tiny_prepared, "segmentation", "heldout")[0]
    labelmap = Predictor(InferenceOptions(device="cpu")).run(case.volume(), ["segmentation"],
                                                            models={"segmentation": card})["segmentation"].labelmap
    truth = np.where(case.labels == 3, 1, np.where(case.labels == 15, 2, 0))   # manifest values -> card values
    dices = [metrics.dice(labelmap, truth, label) for label in (1, 2)]
    expected = np.mean([d for d in dices if not math.isnan(d)])
    native = next(r for r in reports["segmentation"]["rows"] if r["variant"] == "native")
    assert native["model"]["mean_dice"] == pytest.approx(expected)
    assert 0.0 <= reports["segmentation"]["groups"]["motion"]["model"]["mean_dice"] <= 1.0


def test_the_template_landmark_baseline_is_exact_natively_and_off_under_motion(reports):
    groups = reports["landmarks"]["groups"]
    assert groups["native"]["baseline"]["mre_mm"] == pytest.approx(0.0, abs=1e-9)
    assert groups["native"]["baseline"]["within_4mm"] == 1.0
    assert groups["motion"]["baseline"]["mre_mm"] > 1.0
    assert math.isfinite(groups["motion"]["model"]["mre_mm"]) and groups["motion"]["model"]["mre_mm"] > 0


def test_the_majority_class_baseline_answers_mr_and_the_model_its_own_probabilities(reports):
    report = reports["classification"]
    assert "(MR)" in report["baseline"]
    for group in GROUPS:
        assert report["groups"][group]["baseline"]["accuracy"] == 1.0       # the held-out case is MR
        assert report["groups"][group]["model"]["accuracy"] in (0.0, 1.0)
    native = report["native"]["mr_heldout"]
    assert native["truth"] == "MR" and sum(native["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)


def test_no_degraded_and_no_baseline_leave_those_out(tiny_prepared, tiny_cards):
    report = evaluate_model(find_model("tiny-landmarks"), tiny_prepared, transforms=1, degraded=False, baseline=False)
    assert list(report["groups"]) == ["native", "motion"]
    assert all(figures["baseline"] is None for figures in report["groups"].values())
    assert report["baseline"] is None


def test_motions_do_not_depend_on_whether_degradations_are_evaluated(tiny_prepared, tiny_cards, reports):
    report = evaluate_model(find_model("tiny-landmarks"), tiny_prepared, transforms=TRANSFORMS, degraded=False)
    with_degraded = {r["variant"]: r["baseline"]["mre_mm"] for r in reports["landmarks"]["rows"]}
    for row in report["rows"]:
        assert row["baseline"]["mre_mm"] == pytest.approx(with_degraded[row["variant"]])


def test_a_card_trained_on_a_heldout_case_is_refused(tiny_prepared, tiny_cards):
    card = find_model("tiny-cls")
    card.training = {"data": {"train": [{"case": "mr_heldout"}], "label_maps": []}}
    with pytest.raises(ValueError, match=r"trained on \['mr_heldout'\]"):
        evaluate_model(card, tiny_prepared, transforms=0)
