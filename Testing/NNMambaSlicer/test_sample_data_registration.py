"""SampleDataRegistration: the sample is offered through Slicer's Sample Data, and its absence is harmless."""

from __future__ import annotations

import hashlib
import logging
import sys
import types
import urllib.request

from nnmamba.data import sample_volume_path
from NNMambaSlicerLib.SampleDataRegistration import SampleDataRegistration


def sampleDataModule(registered: list) -> types.ModuleType:
    """Sample Data's registration entry point as Slicer defines it (keyword arguments), recording calls."""
    module = types.ModuleType("SampleData")

    class SampleDataLogic:
        @staticmethod
        def registerCustomSampleDataSource(category="Custom", sampleName=None, uris=None, fileNames=None,
                                           nodeNames=None, customDownloader=None, thumbnailFileName=None,
                                           loadFileTypes=None, loadFiles=None, loadFileProperties={},
                                           checksums=None, loadFileType=None):
            registered.append(dict(category=category, sampleName=sampleName, uris=uris, fileNames=fileNames,
                                   nodeNames=nodeNames, thumbnailFileName=thumbnailFileName, checksums=checksums))

    module.SampleDataLogic = SampleDataLogic
    return module


def test_without_sample_data_nothing_is_registered_and_a_log_line_says_so(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "SampleData", None)  # import SampleData raises ImportError
    with caplog.at_level(logging.INFO):
        assert SampleDataRegistration().register() is False
    assert "Sample Data module is not loaded" in caplog.text


def test_the_sample_is_registered_with_a_uri_sample_data_can_fetch_and_its_checksum(monkeypatch, tmp_path):
    registered = []
    monkeypatch.setitem(sys.modules, "SampleData", sampleDataModule(registered))
    assert SampleDataRegistration().register() is True
    (source,) = registered
    assert source["category"] == "nnMamba" and source["nodeNames"] == ["nnMamba sample brain MR"]
    assert source["fileNames"] == ["sample_brain_mr.nrrd"]
    copy = tmp_path / source["fileNames"][0]
    urllib.request.urlretrieve(source["uris"][0], copy)  # what Sample Data does with the URI
    algorithm, digest = source["checksums"][0].split(":")
    assert algorithm == "SHA256" and hashlib.sha256(copy.read_bytes()).hexdigest() == digest
    assert copy.read_bytes() == sample_volume_path().read_bytes()
    assert source["thumbnailFileName"].endswith("NNMambaSlicer.png")
