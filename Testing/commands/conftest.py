"""Fixtures of the command tests: the tiny real model cards of Testing/inference/tiny_models.py,
found before the shipped models/. A test module opts in with
`pytestmark = pytest.mark.usefixtures("use_tiny_models")`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Testing/inference on the path, as Testing/test_models.py does, so this folder's tests can
# `import tiny_models` too (pytest imports this file before the test modules beside it).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))
from tiny_models import write_tiny_models  # noqa: E402


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return write_tiny_models(tmp_path_factory.mktemp("command_models"))


@pytest.fixture
def use_tiny_models(models_dir, monkeypatch) -> Path:
    monkeypatch.setenv("NNMAMBA_MODELS_DIR", str(models_dir))
    return models_dir
