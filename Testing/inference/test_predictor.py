"""The predictor end to end on tiny real networks, and on networks whose output is known."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from test_resampling import OBLIQUE, SHAPE, physical_points
from tiny_models import head_phantom

from nnmamba.errors import Cancelled, InputError, ModelError
from nnmamba.inference import InferenceOptions, Predictor
from nnmamba.io.volumes import geometry_of
from nnmamba.model_card import find_model
from nnmamba.results import ClassificationResult, LandmarkResult, SegmentationResult
from nnmamba.volume import Geometry, Volume
import SimpleITK as sitk


def phantom_volume(**kwargs) -> Volume:
    image = head_phantom(**kwargs)
    return Volume(sitk.GetArrayFromImage(image)[None].astype(np.float32), geometry_of(image))


@pytest.fixture
def predictor(tiny_models):
    return Predictor(InferenceOptions(device="cpu"))


def test_all_three_tasks_run_on_a_volume_smaller_than_a_patch(predictor):
    volume = phantom_volume()   # 16 x 18 x 14 voxels, far below the 32^3 patch at 4 mm
    fractions = []
    results = predictor.run(volume, ["segmentation", "landmarks", "classification"],
                            progress=lambda f, s: fractions.append(f))
    seg, marks, cls = results["segmentation"], results["landmarks"], results["classification"]
    assert isinstance(seg, SegmentationResult) and seg.labelmap.shape == volume.shape_kji
    assert seg.geometry is volume.geometry
    assert set(np.unique(seg.labelmap)) <= {0, 1, 2}
    assert [s.name for s in seg.segments] == ["Left thalamus", "Brainstem"]
    assert isinstance(marks, LandmarkResult) and marks.points_lps.shape == (3, 3)
    assert marks.names == ["AC", "PC", "ICS"] and np.all((0 <= marks.confidence) & (marks.confidence <= 1))
    assert isinstance(cls, ClassificationResult) and cls.probabilities.sum() == pytest.approx(1.0)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_each_model_is_loaded_once_and_reused(predictor):
    volume = phantom_volume()
    predictor.run(volume, ["classification"])
    first = dict(predictor._models)
    predictor.run(volume, ["classification"])
    assert predictor._models == first and len(first) == 1


def test_tta_runs_and_keeps_shapes(tiny_models):
    volume = phantom_volume()
    plain = Predictor(InferenceOptions(device="cpu")).run(volume, ["segmentation"])["segmentation"]
    tta = Predictor(InferenceOptions(device="cpu", tta=True)).run(volume, ["segmentation"])["segmentation"]
    assert plain.labelmap.shape == tta.labelmap.shape == volume.shape_kji


def test_a_card_that_mirrors_always_answers_the_mean_over_its_mirrors_without_tta():
    # the shipped scan-type card on the embedded sample: a real, asymmetric head and real weights
    import dataclasses

    from nnmamba.data import sample_volume_path
    from nnmamba.io.volumes import read_volume

    volume = read_volume([sample_volume_path()])
    card = find_model("scan-type-cls")
    assert card.mirror_always
    once = dataclasses.replace(card, mirror_always=False)

    def probabilities(model, tta):
        result = Predictor(InferenceOptions(device="cpu", tta=tta)).run(volume, ["classification"],
                                                                         models={"classification": model})
        return result["classification"].probabilities

    np.testing.assert_allclose(probabilities(card, False), probabilities(once, True), atol=1e-6)
    assert np.abs(probabilities(card, False) - probabilities(once, False)).max() > 1e-3


def test_a_set_cancel_event_raises_cancelled(predictor):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        predictor.run(phantom_volume(), ["segmentation"], cancel=cancel)


def test_cancel_during_the_tiles_stops_the_job(tiny_models):
    predictor = Predictor(InferenceOptions(device="cpu", tile_batch=1))
    big = phantom_volume(shape_kji=(40, 60, 60), spacing=(2.5, 2.5, 2.5))   # several 32^3 tiles at 4 mm
    cancel = threading.Event()
    stages = []

    def progress(fraction, stage):
        stages.append(stage)
        if "tile 1/" in stage:
            cancel.set()

    with pytest.raises(Cancelled):
        predictor.run(big, ["segmentation"], progress=progress, cancel=cancel)
    assert not any("tile 2/" in s for s in stages[stages.index(next(s for s in stages if "tile 1/" in s)) + 1:])


@pytest.mark.parametrize("change,message", [
    (lambda v: Volume(np.stack([v.array[0], v.array[0]]), v.geometry), "expects 1 input channel"),
    (lambda v: Volume(np.where(v.array > 250, np.nan, v.array), v.geometry), "NaN or infinite"),
    (lambda v: Volume(v.array, Geometry(v.geometry.origin, [-1.0, 1.0, 1.0])), "spacing must be positive"),
    (lambda v: Volume(np.zeros_like(v.array), v.geometry), "constant"),
    (lambda v: Volume(v.array[:, :1], v.geometry), "2-D"),
])
def test_bad_volumes_raise_input_error_naming_the_problem(predictor, change, message):
    with pytest.raises(InputError, match=message):
        predictor.run(change(phantom_volume()), ["segmentation"])


def test_unknown_tasks_and_mismatched_models_are_refused(predictor):
    with pytest.raises(InputError, match="unknown task"):
        predictor.run(phantom_volume(), ["tumour"])
    with pytest.raises(ModelError, match="does landmarks, not segmentation"):
        predictor.run(phantom_volume(), ["segmentation"], models={"segmentation": "tiny-landmarks"})
    with pytest.raises(ModelError, match="no model named"):
        predictor.run(phantom_volume(), ["segmentation"], models={"segmentation": "nope"})


def test_options_are_validated_with_plain_words():
    with pytest.raises(InputError, match=r"overlap must be >= 0 and < 1, got 1.2"):
        InferenceOptions(overlap=1.2)
    with pytest.raises(InputError, match="precision must be one of"):
        InferenceOptions(precision="int8")
    with pytest.raises(InputError, match="unknown inference option"):
        InferenceOptions.from_dict({"overlapp": 0.3})


class Repeat(torch.nn.Module):
    """A 'network' with a known output: the input channel, repeated (optionally negated)."""

    def __init__(self, signs):
        super().__init__()
        self.signs = torch.tensor(signs, dtype=torch.float32).view(1, -1, 1, 1, 1)

    def forward(self, x):
        return x[:, :1] * self.signs.to(x.device)


def blob_volume(centre_lps, sigma_mm=7.0) -> Volume:
    points = physical_points(OBLIQUE, SHAPE)
    blob = np.exp(-np.sum((points - centre_lps) ** 2, axis=-1) / (2 * sigma_mm ** 2))
    return Volume((1000 * blob + 1)[None].astype(np.float32), OBLIQUE)


def test_landmarks_land_on_the_physical_point_of_the_heatmap_peak_on_an_oblique_anisotropic_volume(tiny_models):
    centre = physical_points(OBLIQUE, SHAPE)[9, 14, 12] + np.array([0.6, -0.8, 0.3])
    predictor = Predictor(InferenceOptions(device="cpu"))
    card = find_model("tiny-landmarks")
    predictor.use_network(card, Repeat([1.0, 1.0, 1.0]))
    result = predictor.run(blob_volume(centre), ["landmarks"])["landmarks"]
    # 4 mm working grid: the parabola fit must bring the point well inside one working voxel.
    np.testing.assert_allclose(result.points_lps, np.repeat(centre[None], 3, axis=0), atol=1.0)


def test_segmentation_lands_on_the_same_physical_place_on_an_oblique_anisotropic_volume(tiny_models):
    centre = physical_points(OBLIQUE, SHAPE)[9, 15, 13]
    volume = blob_volume(centre, sigma_mm=6.0)
    predictor = Predictor(InferenceOptions(device="cpu"))
    card = find_model("tiny-seg")
    # Class 1 logit = normalised intensity, others = its negative: label 1 where the blob is bright.
    predictor.use_network(card, Repeat([-1.0, 1.0, -1.0]))
    result = predictor.run(volume, ["segmentation"])["segmentation"]
    assert result.geometry is volume.geometry and result.labelmap.shape == SHAPE
    inside = result.labelmap == 1
    assert inside.sum() > 50
    points = physical_points(OBLIQUE, SHAPE)
    np.testing.assert_allclose(points[inside].mean(axis=0), centre, atol=1.0)


def test_bf16_autocast_runs_and_stays_close_to_fp32(tiny_models):
    volume = phantom_volume()
    fp32 = Predictor(InferenceOptions(device="cpu", precision="fp32")).run(volume, ["classification", "segmentation"])
    bf16 = Predictor(InferenceOptions(device="cpu", precision="bf16")).run(volume, ["classification", "segmentation"])
    np.testing.assert_allclose(bf16["classification"].probabilities, fp32["classification"].probabilities, atol=0.05)
    agreement = (bf16["segmentation"].labelmap == fp32["segmentation"].labelmap).mean()
    assert agreement > 0.9


def test_every_result_carries_the_seconds_of_its_stages(predictor):
    results = predictor.run(phantom_volume(), ["segmentation", "landmarks", "classification"])
    for task, result in results.items():
        assert set(result.timings) == {"resample_s", "network_s", "postprocess_s"}, task
        assert all(seconds >= 0 for seconds in result.timings.values())
        assert result.timings["network_s"] > 0


def test_options_given_to_one_call_hold_for_that_call_only(tiny_models):
    predictor = Predictor(InferenceOptions(device="cpu"))
    volume = phantom_volume()
    mirrored = predictor.run(volume, ["landmarks"], options=InferenceOptions(device="cpu", tta=True))
    plain = predictor.run(volume, ["landmarks"])
    again = predictor.run(volume, ["landmarks"], options=InferenceOptions(device="cpu", tta=True))
    assert predictor.options.tta is False
    np.testing.assert_array_equal(mirrored["landmarks"].points_lps, again["landmarks"].points_lps)
    assert not np.array_equal(mirrored["landmarks"].points_lps, plain["landmarks"].points_lps) or \
        not np.array_equal(mirrored["landmarks"].confidence, plain["landmarks"].confidence)
    with pytest.raises(InputError, match="this predictor runs on cpu"):
        predictor.run(volume, ["landmarks"], options=InferenceOptions(device="meta"))


def test_labels_equal_those_of_the_simpleitk_pipeline_of_before_except_at_ties(tmp_path):
    """The predictor resamples, normalises and post-processes with torch where the network runs; the
    pipeline it replaced did it with SimpleITK and numpy. Same labels, but where two classes are
    within float32 rounding (and the folded BatchNorms' rounding) of each other."""
    from tiny_models import oblique_head, write_calibrated_cards

    from nnmamba.inference.normalization import normalize
    from nnmamba.inference.resampling import probabilities_to_labels, resample_channels, working_grid
    from nnmamba.inference.sliding_window import sliding_window

    cards = write_calibrated_cards(tmp_path)
    card = find_model(cards["segmentation"])
    volume = oblique_head()
    predictor = Predictor(InferenceOptions(device="cpu"))
    got = predictor.run(volume, ["segmentation"], {"segmentation": cards["segmentation"]})["segmentation"].labelmap

    geometry, shape = working_grid(volume.geometry, volume.shape_kji, card.spacing_mm, card.orientation)
    image = normalize(resample_channels(volume.array[None], volume.geometry, geometry, shape), card.normalization)
    classes = card.hyperparameters["number_classes"]
    scores = sliding_window(predictor.model(card), torch.from_numpy(image), tuple(reversed(card.patch_size)),
                            classes, overlap=0.5, tile_batch=2)
    probabilities = torch.softmax(scores, dim=0).numpy()
    expected = probabilities_to_labels(probabilities, geometry, volume.geometry, volume.shape_kji)
    assert len(np.unique(expected)) == classes          # every class present: agreement means something
    differ = got != expected
    assert differ.mean() < 1e-3, differ.mean()
    if differ.any():
        values = resample_channels(probabilities, geometry, volume.geometry, volume.shape_kji)
        top2 = np.sort(values, axis=0)[-2:]
        assert np.all((top2[1] - top2[0])[differ] < 1e-4)
