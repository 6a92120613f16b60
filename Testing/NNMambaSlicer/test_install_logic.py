"""InstallLogic: what the worker needs, checked without installing anything."""

from __future__ import annotations

import os
import sys
import tomllib
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from NNMambaSlicerLib.InstallLogic import TORCH_REQUIREMENT, InstallLogic

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_requirements_file_matches_the_engines_dependencies_that_slicer_does_not_ship():
    engine = {Requirement(r).name.lower(): Requirement(r) for r in
              tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    shipped = [Requirement(r) for r in InstallLogic().requirements()]
    commandLineOnly = {"tqdm", "matplotlib"}  # progress bar and PNG summary: not the worker's
    assert {r.name.lower() for r in shipped} == set(engine) - {"torch", "numpy", "simpleitk"} - commandLineOnly
    for requirement in shipped:
        assert requirement.specifier == engine[requirement.name.lower()].specifier, requirement.name
    assert Requirement(TORCH_REQUIREMENT).specifier == engine["torch"].specifier


def test_nothing_is_missing_in_the_test_environment_and_a_missing_package_is_named(tmp_path):
    assert InstallLogic().missingRequirements() == []
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# comment\nsafetensors>=0.4\nno-such-package-nnmamba>=1\nnumpy<1\n")
    assert InstallLogic(requirements).missingRequirements() == ["no-such-package-nnmamba>=1", "numpy<1"]


def test_declining_the_install_installs_nothing(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("no-such-package-nnmamba>=1\n")
    questions = []
    assert InstallLogic(requirements).installMissing(confirm=lambda q: questions.append(q) or False) is False
    assert "no-such-package-nnmamba>=1" in questions[0]


def test_another_python_that_can_run_the_worker_passes_the_check():
    assert InstallLogic.checkOtherPython(sys.executable) is None


def test_a_python_without_the_engines_packages_is_reported_with_the_fix(tmp_path):
    venv.create(tmp_path / "bare", with_pip=False, symlinks=True)  # a real Python with no packages
    python = tmp_path / "bare" / "bin" / "python"
    problem = InstallLogic.checkOtherPython(str(python))
    assert "No module named 'torch'" in problem and "-m pip install 'nnmamba[cuda]'" in problem


def test_without_the_pytorch_extension_torch_is_not_taken_from_pip_and_the_fix_is_named():
    # In this environment no PyTorchUtils module exists; pip's torch would be CPU-only on Windows.
    with pytest.raises(RuntimeError, match="install 'PyTorch' from the Extensions Manager"):
        InstallLogic().installTorch()


def test_another_python_is_checked_in_the_environment_it_is_given(tmp_path):
    # A Python started with another interpreter's PYTHONHOME cannot even find its standard library.
    broken = {**os.environ, "PYTHONHOME": str(tmp_path / "not-a-python-home")}
    problem = InstallLogic.checkOtherPython(sys.executable, environment=broken)
    assert problem is not None and f"the Python '{sys.executable}' cannot run the worker" in problem


def test_a_remote_worker_needs_only_the_client_packages(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("safetensors>=0.4\nwebsockets>=999\n")
    install = InstallLogic(requirements)
    assert install.missingRequirements(clientOnly=True) == ["websockets>=999"]
    questions = []
    assert install.installMissing(confirm=lambda q: questions.append(q) or False, clientOnly=True) is False
    assert "websockets>=999" in questions[0] and "torch" not in questions[0]


def test_an_intel_mac_slicer_is_told_to_use_a_native_worker_python_before_anything_is_installed():
    underRosetta = InstallLogic.platformProblem("Darwin", "x86_64", translated=True)
    assert "under Rosetta" in underRosetta and "NumPy 2" in underRosetta and "'Worker Python'" in underRosetta
    assert "under Rosetta" not in InstallLogic.platformProblem("Darwin", "x86_64", translated=False)
    assert InstallLogic.platformProblem("Darwin", "arm64") is None
    assert InstallLogic.platformProblem("Linux", "x86_64") is None
