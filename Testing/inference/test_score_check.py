"""A job whose network gives NaN or infinite scores on the user's volume fails with a clear error
instead of decoding them into something that looks like an answer."""

import numpy as np
import pytest
import torch

from nnmamba.data import sample_volume_path
from nnmamba.errors import ModelError
from nnmamba.inference import Predictor
from nnmamba.inference.options import InferenceOptions
from nnmamba.inference.score_check import NonFiniteScoresError, check_scores_finite
from nnmamba.io import read_volume
from nnmamba.model_card import default_model
from nnmamba.models import load_model
from nnmamba.volume import Volume


def test_finite_scores_pass_and_nan_or_inf_fail_naming_the_share_and_the_remedy():
    scores = torch.zeros(2, 4, 4, 4)
    check_scores_finite(scores, "m", "fp32")
    scores[0, 0, 0, :2] = float("nan")
    scores[1, 0, 0, 0] = float("inf")
    with pytest.raises(NonFiniteScoresError, match=r"m gave non-finite scores .* for 2\.34% .* in bf16") as caught:
        check_scores_finite(scores, "m", "bf16")
    assert "--precision fp32" in str(caught.value)
    with pytest.raises(NonFiniteScoresError) as caught:
        check_scores_finite(scores, "m", "fp32")
    assert "--precision fp32" not in str(caught.value)     # already fp32: the volume or the weights
    assert isinstance(caught.value, ModelError) and caught.value.code == "bad_model"


def test_a_network_sound_on_the_probe_that_overflows_on_the_volume_fails_the_job():
    """The shipped landmark network with its first convolution scaled by 1e9 still passes the load-time
    probe (inputs in [0, 1)) but overflows on the real sample's z-scores: the job must fail, not
    answer decoded infinities (scaled by 1e6 it stays finite; by 1e12 the probe refuses it)."""
    card = default_model("landmarks")
    network = load_model(card, "cpu")
    with torch.no_grad():
        next(p for p in network.parameters() if p.dim() == 5).mul_(1e9)
    predictor = Predictor(InferenceOptions(device="cpu", precision="fp32"))
    predictor.use_network(card, network)
    volume = read_volume(sample_volume_path())
    with pytest.raises(NonFiniteScoresError, match="afids-landmarks gave non-finite scores"):
        predictor.run(Volume(volume.array, volume.geometry), ["landmarks"], models={"landmarks": card})
    assert np.isfinite(volume.array).all()      # the input itself was sound
