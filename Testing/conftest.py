"""Shared pytest setup: paths to the shared reference vectors and the gpu marker's skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# ../shared beside the checkout (a session's layout) or shared/ inside it (a fresh clone's link).
SHARED_CANDIDATES = [REPO_ROOT.parent / "shared", REPO_ROOT / "shared"]


def shared_dir() -> Path:
    env = os.environ.get("NNMAMBA_SHARED_DIR")
    if env:
        return Path(env)
    for candidate in SHARED_CANDIDATES:
        if (candidate / "vectors").is_dir():
            return candidate
    pytest.skip("the shared reference vectors (../shared/vectors) are not present")


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    return shared_dir() / "vectors"


def pytest_collection_modifyitems(config, items):
    try:
        import torch
        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
