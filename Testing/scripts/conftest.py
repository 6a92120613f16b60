"""scripts/prepare_data.py loaded as a module (it is a script, not part of the package)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PREPARE_DATA = Path(__file__).resolve().parents[2] / "scripts" / "prepare_data.py"


@pytest.fixture(scope="module")
def prepare_data():
    spec = importlib.util.spec_from_file_location("prepare_data", PREPARE_DATA)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
