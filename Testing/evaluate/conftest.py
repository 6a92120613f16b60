"""Fixtures of the evaluation tests: a tiny prepared-data folder and the tiny real cards."""

from __future__ import annotations

import pytest
from evaluate_helpers import write_cards, write_prepared


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory):
    return write_prepared(tmp_path_factory.mktemp("prepared"))


@pytest.fixture(scope="session")
def tiny_cards_dir(tmp_path_factory):
    return write_cards(tmp_path_factory.mktemp("cards"))


@pytest.fixture
def tiny_cards(tiny_cards_dir, monkeypatch):
    """Cards are found in the tiny folder first (before the shipped models/)."""
    monkeypatch.setenv("NNMAMBA_MODELS_DIR", str(tiny_cards_dir))
    return tiny_cards_dir
