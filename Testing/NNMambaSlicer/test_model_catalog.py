"""ModelCatalog: the worker's models once it runs, the local cards before, and it says which."""

from __future__ import annotations

import json

import pytest

from fake_worker import FakeClient
from model_folders import copyShippedClassifier
from nnmamba.worker.engine import model_summaries
from NNMambaSlicerLib.ModelCatalog import ModelCatalog, ModelEntry


def test_before_a_worker_exists_the_shipped_cards_are_listed_and_the_source_says_so():
    catalog = ModelCatalog.fromDisk()
    assert {m.name for m in catalog.forTask("segmentation")} == {"brain-structures-seg"}
    assert {m.name for m in catalog.forTask("landmarks")} == {"afids-landmarks"}
    assert not catalog.fromWorkerList and "on this computer" in catalog.source


def test_a_folder_chosen_in_the_panel_is_searched_first(tmp_path):
    copyShippedClassifier(tmp_path, "my-own-classifier")
    catalog = ModelCatalog.fromDisk([tmp_path])
    assert [m.name for m in catalog.forTask("classification")] == ["my-own-classifier", "scan-type-cls"]
    assert str(tmp_path) in catalog.source


def test_a_broken_card_is_reported_and_does_not_break_the_list(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.json").write_text(json.dumps({"schema_version": 1, "network": "nnMambaSeg"}))
    catalog = ModelCatalog.fromDisk([tmp_path])
    assert catalog.problems and catalog.entries == []


def test_a_remote_workers_models_replace_the_local_ones_even_those_this_computer_lacks():
    remote = [{"name": "server-only-seg", "task": "segmentation", "trained": False, "channels": ["T1", "T2"],
               "summary": "server-only-seg: segmentation"}]
    catalog = ModelCatalog.fromWorker(FakeClient(models=remote), "the worker at gpu:8765")
    assert catalog.fromWorkerList and catalog.source == "models of the worker at gpu:8765"
    entry = catalog.find("segmentation", "server-only-seg")
    assert entry.label == "server-only-seg (untrained)" and entry.channels == ("T1", "T2")
    assert catalog.whyCannotRun("segmentation", "server-only-seg") is None
    assert catalog.whyCannotRun("segmentation", "brain-structures-seg") == (
        "The segmentation model 'brain-structures-seg' is not among the models of the worker at gpu:8765; "
        "choose another.")
    assert "No landmarks model is available" in catalog.whyCannotRun("landmarks", "")


def test_the_real_workers_summaries_read_as_the_same_entries_as_the_cards():
    fromWorker = ModelCatalog.fromWorker(FakeClient(models=model_summaries()), "the local worker")
    assert sorted(fromWorker.entries, key=lambda m: m.name) == sorted(ModelCatalog.fromDisk().entries,
                                                                      key=lambda m: m.name)


def test_a_summary_without_a_name_is_refused_with_what_it_got():
    with pytest.raises(ValueError, match="needs at least 'name' and 'task'"):
        ModelEntry.fromSummary({"task": "segmentation"})


def test_each_entry_says_how_far_to_trust_its_model():
    from NNMambaSlicerLib.ModelCatalog import ModelEntry
    assert "not meaningful" in ModelEntry("a", "segmentation", trained=False).trustNote
    assert ModelEntry("a", "segmentation", quality="unvalidated").trustNote.startswith("Unvalidated")
    assert ModelEntry("a", "segmentation", quality="research").label == "a (research)"
    assert "Not for clinical use" in ModelEntry("a", "segmentation", quality="research").trustNote
