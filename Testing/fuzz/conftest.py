"""The fuzz suite's settings and real parts: a reader process, tiny models, a worker server.

Hypothesis profiles (choose with `--hypothesis-profile NAME` or $NNMAMBA_FUZZ_PROFILE):
- `ci` (default): derandomized (the same examples on every run, so CI is reproducible and its
  time bounded: the whole suite takes well under 3 minutes on 2 cores), no example database;
- `deep`: random examples, 20x as many; for a session hunting new failures, not for CI.
Each test sets its own `max_examples` for `ci`; `deep` multiplies them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))   # tiny_models
sys.path.insert(0, str(Path(__file__).resolve().parent))

PROFILE = os.environ.get("NNMAMBA_FUZZ_PROFILE", "ci")
EXAMPLES_SCALE = 20 if PROFILE == "deep" else 1
_COMMON = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much])
settings.register_profile("ci", derandomize=True, **_COMMON)
settings.register_profile("deep", derandomize=False, **_COMMON)
settings.load_profile(PROFILE)


def examples(count: int) -> int:
    """`count` examples under the `ci` profile, more under `deep`."""
    return count * EXAMPLES_SCALE


def child_env(**extra) -> dict:
    """The environment of the processes the fuzz tests start: this checkout first on the path."""
    paths = [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths), OMP_NUM_THREADS="1", **extra)


@pytest.fixture(scope="session")
def fuzz_models_dir(tmp_path_factory) -> Path:
    from tiny_models import write_tiny_models

    return write_tiny_models(tmp_path_factory.mktemp("fuzz_models"))


@pytest.fixture(scope="module")
def reader_process():
    from reader_child import ReaderProcess

    reader = ReaderProcess(child_env())
    yield reader
    reader.close()
