"""A fourth task, defined here and nowhere in `nnmamba/`, runs from its card to its written file.

`ForegroundTask` answers "what fraction of the volume is foreground" from a two-class nnMambaSeg.
Registering it is the only step: the model card validates it, the real `Predictor` runs it, the
real writers write it (beside the summary PNG), the worker protocol carries it and
`output_paths`/`stem_of` know its file, with no other file changed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from nnmamba import tasks
from nnmamba.inference import InferenceOptions, Predictor
from nnmamba.io import output_paths, stem_of, write_results
from nnmamba.io.atomic import write_text_atomically
from nnmamba.errors import ModelError
from nnmamba.model_card import find_model, validate_card_dict
from nnmamba.models import build_for_card, save_model
from nnmamba.tasks.base import TaskDefinition
from nnmamba.volume import Geometry, Volume
from nnmamba.worker.protocol import Event, EventKind, decode_event, encode_event


@dataclass
class ForegroundResult:
    name: str
    fraction: float
    model: str = ""
    timings: dict = field(default_factory=dict)


class ForegroundTask(TaskDefinition):
    name = "foreground"
    result_type = ForegroundResult
    suffixes = (".foreground.txt",)
    networks = ("nnMambaSeg",)

    def card_fields(self, card, hyperparameters, require, fail):
        require(card, "foreground", str)
        if hyperparameters.get("number_classes") != 2:
            raise fail(f"a foreground model has 2 classes, got {hyperparameters.get('number_classes')!r}")
        return {}

    def output_names(self, card):
        return [card.raw["foreground"]]

    def out_channels(self, card):
        return 2

    def decode(self, card, output, working_geometry, volume):
        return ForegroundResult(card.raw["foreground"], float((output.argmax(dim=0) == 1).float().mean()))

    def write(self, result, base):
        return [write_text_atomically(Path(f"{base}{self.suffixes[0]}"), f"{result.name}\t{result.fraction:.6f}\n")]

    def encode(self, result):
        return {"name": result.name}, {"fraction": np.array([result.fraction])}

    def decode_wire(self, header, arrays, model, timings, read_geometry):
        return ForegroundResult(header["name"], float(arrays["fraction"][0]), model, timings)


CARD = {
    "schema_version": 1, "name": "tiny-foreground", "task": "foreground", "network": "nnMambaSeg",
    "hyperparameters": {"in_ch": 1, "channels": 4, "blocks": 2, "number_classes": 2},
    "weights": "weights.safetensors", "trained": False, "foreground": "head",
    "input": {"channels": [{"name": "any", "modality": "any"}], "spacing_mm": [4.0, 4.0, 4.0],
              "orientation": "LPS", "patch_size": [32, 32, 32],
              "normalization": {"method": "zscore", "mask": "nonzero"}},
    "inference": {"mirror_axes": []},
}


@pytest.fixture
def foreground_task():
    task = tasks.register(ForegroundTask())
    yield task
    tasks.unregister(task.name)


def _ball(shape=(20, 24, 22)) -> Volume:
    k, j, i = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    array = np.where(np.sqrt(i ** 2 + j ** 2 + k ** 2) < 0.8, 200.0, 1.0).astype(np.float32)
    return Volume(array, Geometry.identity(spacing=(3.0, 3.0, 3.0)))


def test_a_registered_task_runs_from_its_card_to_its_written_file(foreground_task, tmp_path, monkeypatch):
    import torch

    torch.manual_seed(0)
    network = build_for_card(validate_card_dict(copy.deepcopy(CARD)), scan_backend="reference")
    save_model(copy.deepcopy(CARD), network, tmp_path / "models")
    monkeypatch.setenv("NNMAMBA_MODELS_DIR", str(tmp_path / "models"))
    card = find_model("tiny-foreground")
    assert card.output_names == ["head"]

    volume = _ball()
    results = Predictor(InferenceOptions(device="cpu")).run(volume, ["foreground"], {"foreground": card.name})
    result = results["foreground"]
    assert isinstance(result, ForegroundResult) and 0.0 <= result.fraction <= 1.0
    assert result.model == "tiny-foreground" and {"resample_s", "network_s", "postprocess_s"} <= set(result.timings)

    assert output_paths(tmp_path / "out", "case", ["foreground"], summary=False) == [
        tmp_path / "out" / "case.foreground.txt"]
    written = write_results(results, volume, tmp_path / "out", "case")
    assert [p.name for p in written] == ["case.foreground.txt", "case.summary.png"]
    assert (tmp_path / "out" / "case.foreground.txt").read_text() == f"head\t{result.fraction:.6f}\n"
    assert stem_of(Path("case.foreground.txt")) == "case"


def test_a_registered_task_crosses_the_worker_protocol(foreground_task):
    sent = Event(EventKind.RESULT, "job-1", 1.0, "done",
                 {"foreground": ForegroundResult("head", 0.25, "tiny-foreground", {"network_s": 0.5})})
    header, arrays = encode_event(sent)
    names = [spec["name"] for spec in header["arrays"]]
    received = decode_event(header, dict(zip(names, arrays)))
    assert received.results == sent.results


def test_a_card_of_the_new_task_is_checked_by_the_task(foreground_task):
    wrong = dict(copy.deepcopy(CARD), hyperparameters=dict(CARD["hyperparameters"], number_classes=3))
    with pytest.raises(ModelError, match="a foreground model has 2 classes, got 3"):
        validate_card_dict(wrong)
    with pytest.raises(ModelError, match="missing required field 'foreground'"):
        validate_card_dict({k: v for k, v in CARD.items() if k != "foreground"})


def test_a_task_name_is_refused_until_the_task_is_registered():
    with pytest.raises(ModelError, match="'task' must be one of"):
        validate_card_dict(copy.deepcopy(CARD))
