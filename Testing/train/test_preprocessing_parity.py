"""Training must preprocess exactly as inference does: same normalisation, and heatmap targets
whose peaks the inference peak finder recovers."""

import numpy as np
import pytest
import torch

from nnmamba.inference.landmarks import heatmap_peaks
from nnmamba.inference.normalization import normalize
from nnmamba.train.data import gaussian_heatmaps
from nnmamba.inference.normalization import normalize_batch


@pytest.mark.parametrize("spec", [{"method": "zscore", "mask": "nonzero"}, {"method": "zscore", "mask": "all"},
                                  {"method": "ct", "clip": [-1000, 1000], "mean": 40.0, "std": 300.0}])
def test_training_normalisation_equals_the_inference_pipelines(spec):
    rng = np.random.default_rng(0)
    image = rng.normal(300, 80, (12, 14, 10)).astype(np.float32)
    image[:4] = 0  # background, as around a brain-extracted template
    expected = normalize(image[None], spec)[0]
    got = normalize_batch(torch.from_numpy(image)[None], spec)[0].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_zscore_nonzero_falls_back_to_all_voxels_like_inference_when_almost_all_are_zero():
    image = np.zeros((10, 10, 10), np.float32)
    image[0, 0, :5] = 7.0  # 0.5% non-zero
    spec = {"method": "zscore", "mask": "nonzero"}
    np.testing.assert_allclose(normalize_batch(torch.from_numpy(image)[None], spec)[0].numpy(),
                               normalize(image[None], spec)[0], rtol=1e-5, atol=1e-5)


def test_inference_peak_finder_recovers_subvoxel_points_from_training_heatmaps():
    points = np.array([[10.3, 7.6, 5.2], [3.0, 12.45, 8.9]])  # (i, j, k)
    maps = gaussian_heatmaps((14, 16, 20), points, sigma_voxels=2.0)
    assert maps.shape == (2, 14, 16, 20)
    assert maps.max() <= 1.0 and maps[0].max() > 0.9
    ijk, heights = heatmap_peaks(maps)
    np.testing.assert_allclose(ijk, points, atol=0.1)


def _augmentation_off():
    from nnmamba.train.synth import SpatialConfig, SynthConfig

    spatial = SpatialConfig(rotate_degrees=0, scale=0, elastic_std_voxels=0, flip_probability=0)
    return SynthConfig(spatial=spatial, resolution_probability=0, bias_std=0, gamma_std=0, noise_std_ct=0,
                       noise_fraction_real_mr=0, zero_background_probability=0, fov_cut_probability=0)


def _brain_extracted_volume(shape_kji=(24, 28, 20)):
    rng = np.random.default_rng(3)
    image = np.zeros(shape_kji, np.float32)
    k, j, i = (n // 5 for n in shape_kji)
    image[k:-k, j:-j, i:-i] = rng.normal(400, 60, (shape_kji[0] - 2 * k, shape_kji[1] - 2 * j, shape_kji[2] - 2 * i))
    return image


@pytest.mark.parametrize("volume_kji", [(32, 32, 32), (24, 28, 20)])
def test_a_training_case_with_augmentation_off_is_exactly_what_the_predictor_feeds_the_network(volume_kji):
    """One preprocessing: a brain-extracted volume (75 % zeros) gives the same normalised patch in
    training (augmentation off) and at inference, including the region beyond the scan (patch larger
    than the volume), which both set to the normalised background 0."""
    from nnmamba.inference import InferenceOptions, Predictor
    from nnmamba.inference.sliding_window import center_crop_or_pad
    from nnmamba.model_card import validate_card_dict
    from nnmamba.train.synth import ImageAugmenter
    from nnmamba.volume import Geometry, Volume

    spec = {"method": "percentile", "lower": 0.5, "upper": 99.5}
    patch_kji = (32, 32, 32)
    image = _brain_extracted_volume(volume_kji)
    geometry = Geometry(np.array([-20.0, 30.0, 5.0]), np.array([2.0, 2.0, 2.0]), np.eye(3))
    card = validate_card_dict({
        "schema_version": 1, "name": "parity", "task": "classification", "network": "nnMambaEncoder",
        "hyperparameters": {"in_ch": 1, "channels": 4, "blocks": 2, "number_classes": 2}, "weights": "w.safetensors",
        "trained": False,
        "input": {"channels": [{"name": "MR"}], "spacing_mm": [2.0, 2.0, 2.0], "patch_size": list(patch_kji[::-1]),
                  "normalization": spec},
        "classes": [{"name": "a"}, {"name": "b"}]})
    prepared, _ = Predictor(InferenceOptions(device="cpu"))._prepare(card, Volume(image[None], geometry), {})
    fed = center_crop_or_pad(prepared, patch_kji)[0].numpy()     # what the classifier's network receives

    augmenter = ImageAugmenter(torch.from_numpy(image)[None, None], torch.tensor([0.0]), torch.tensor([False]),
                               patch_kji, _augmentation_off())
    batch = augmenter(torch.tensor([0]), torch.Generator().manual_seed(0))
    trained = normalize_batch(batch.image, spec, batch.inside)[0, 0].numpy()

    assert (image == 0).mean() > 0.5
    np.testing.assert_allclose(trained, fed, atol=2e-5)
    if patch_kji != image.shape:
        assert not batch.inside.all() and trained[0].max() == 0.0   # beyond the scan: the background, no noise


def test_noise_and_bias_outside_the_field_of_view_never_reach_the_network():
    from nnmamba.train.synth import ImageAugmenter, SynthConfig, SpatialConfig

    image = _brain_extracted_volume()
    config = SynthConfig(spatial=SpatialConfig(rotate_degrees=0, scale=0, elastic_std_voxels=0),
                         noise_fraction_real_mr=0.5, bias_std=0.7, fov_cut_probability=1.0, fov_cut_max=0.3)
    augmenter = ImageAugmenter(torch.from_numpy(image)[None, None], torch.tensor([0.0]), torch.tensor([False]),
                               (32, 32, 32), config)
    batch = augmenter(torch.tensor([0, 0, 0]), torch.Generator().manual_seed(1))
    out = normalize_batch(batch.image, {"method": "percentile"}, batch.inside)
    assert (~batch.inside).any() and batch.inside.any()
    assert (out[~batch.inside] == 0).all()
    assert out[batch.inside].std() > 0.05


def test_training_cases_resample_without_simpleitk_exactly_as_simpleitk_does():
    """Training runs on GPU machines without SimpleITK: resample_case is torch, checked against ITK."""
    import SimpleITK as sitk

    from nnmamba.train.data import PreparedCase, resample_case
    from nnmamba.volume import Geometry

    rng = np.random.default_rng(5)
    image = rng.normal(100, 30, (21, 25, 19)).astype(np.float32)
    geometry = Geometry(np.array([-30.0, 12.0, 4.0]), np.array([2.0, 2.0, 2.0]), np.eye(3))
    out = resample_case(PreparedCase("c", image, geometry, "MR"), (4.0, 4.0, 4.0))
    itk = sitk.GetImageFromArray(image)
    itk.SetOrigin(geometry.origin.tolist())
    itk.SetSpacing(geometry.spacing.tolist())
    expected = sitk.GetArrayFromImage(sitk.Resample(itk, [int(n) for n in out.shape_kji[::-1]], sitk.Transform(),
                                                    sitk.sitkLinear, geometry.origin.tolist(), [4.0] * 3,
                                                    np.eye(3).ravel().tolist(), 0.0))
    assert out.shape_kji == (11, 13, 10)
    np.testing.assert_allclose(out.image, expected, atol=1e-3)
