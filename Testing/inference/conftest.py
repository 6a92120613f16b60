"""Fixtures of the inference tests: a folder of tiny real model cards."""

from __future__ import annotations

import pytest
from tiny_models import write_tiny_models


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory):
    return write_tiny_models(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture
def tiny_models(tiny_models_dir, monkeypatch):
    """Cards are found in the tiny folder first (before the shipped models/)."""
    monkeypatch.setenv("NNMAMBA_MODELS_DIR", str(tiny_models_dir))
    return tiny_models_dir
