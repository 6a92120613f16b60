"""The embedded sample and the card schema travel inside the wheel and are found there."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_built_wheel_carries_the_sample_and_finds_it_when_unpacked(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            str(REPO), "-w", str(tmp_path / "wheel")], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "wheel").glob("nnmamba-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert {"nnmamba/data/sample_brain_mr.nrrd", "nnmamba/data/README.md",
                "nnmamba/data/LICENSE-pyradiomics.txt", "nnmamba/model_card.schema.json",
                "nnmamba/data/afids/tpl-MNI152NLin2009cAsym_afids.fcsv", "nnmamba/data/afids/README.md"} <= names
        archive.extractall(tmp_path / "site")
    code = "from nnmamba.data import sample_volume_path as p; print(p())"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                           cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"})
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()) == tmp_path / "site" / "nnmamba" / "data" / "sample_brain_mr.nrrd"
