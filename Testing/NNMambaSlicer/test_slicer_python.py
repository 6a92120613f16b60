"""The module in a Python holding only what Slicer bundles (slicer-core 5.12 for MRML): it loads,
its Logic builds, the dependency check names what the worker still needs, and the result
builders' tests pass there too (the main test environment has slicer-core 5.13)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from slicer_python_env import NOT_IN_SLICER, SlicerPythonEnvironment

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE_FILE = REPO_ROOT / "NNMambaSlicer" / "NNMambaSlicer.py"
OLDER_SLICER_CORE = "5.12.4.0"

# Run in the Slicer-like Python. slicer-core has MRML but not the application's scripted-module
# base classes (slicer.ScriptedLoadableModule needs PythonQt); Slicer provides them, so this
# script does too, as empty classes: everything else the module file imports is the real thing.
LOAD_MODULE = r"""
import importlib.util, json, sys, types
import slicer
base = types.ModuleType("slicer.ScriptedLoadableModule")
for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic",
             "ScriptedLoadableModuleTest"):
    setattr(base, name, type(name, (), {}))
sys.modules[base.__name__] = base
slicer.ScriptedLoadableModule = base
slicer.mrmlScene = slicer.vtkMRMLScene()

moduleFile = sys.argv[1]
sys.path.insert(0, str(__import__("pathlib").Path(moduleFile).parent))  # as Slicer does for a module path
spec = importlib.util.spec_from_file_location("NNMambaSlicer", moduleFile)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
logic = module.NNMambaSlicerLogic()
from NNMambaSlicerLib.InstallLogic import InstallLogic
missing = InstallLogic().missingRequirements()
loaded = sorted(name for name in sys.argv[2:] if name in sys.modules)
try:
    logic.connection.client()
    startError = ""
except RuntimeError as error:
    startError = str(error)
logic.close()
from NNMambaSlicerLib.WorkerConnection import WorkerConnection, WorkerSettings
try:
    WorkerConnection(WorkerSettings(remoteHost="gpu.example", remotePort=1, remoteToken="t")).client()
    remoteError = ""
except RuntimeError as error:
    remoteError = str(error)
missingClient = InstallLogic().missingRequirements(clientOnly=True)
library = sys.modules["NNMambaSlicerLib.InferenceLogic"]
forgotten = module.forgetLibrary()
import NNMambaSlicerLib.InferenceLogic as reloaded
print(json.dumps({"missing": missing, "startError": startError, "remoteError": remoteError,
                  "missingClient": missingClient, "loaded": loaded, "busy": logic.isBusy, "forgotten": sorted(forgotten),
                  "reloadedIsNew": reloaded is not library}))
"""


@pytest.fixture(scope="module")
def slicerPython(tmp_path_factory):
    root = tmp_path_factory.mktemp("slicer-python")
    yield SlicerPythonEnvironment(root, OLDER_SLICER_CORE).create()
    shutil.rmtree(root, ignore_errors=True)  # about 1 GB, mostly VTK


def runIn(environment: SlicerPythonEnvironment, arguments: list, extraPath: tuple = ()) -> subprocess.CompletedProcess:
    # Not from the checkout's root: `python -c` would find the nnmamba package there by itself.
    return subprocess.run([str(environment.python), *arguments], capture_output=True, text=True, timeout=300,
                          cwd=environment.root, env=environment.environment(extraPath))


@pytest.mark.slow
def test_the_environment_really_lacks_what_slicer_does_not_bundle(slicerPython):
    probe = "import importlib.util, sys; print([n for n in sys.argv[1:] if importlib.util.find_spec(n)])"
    completed = runIn(slicerPython, ["-c", probe, *NOT_IN_SLICER, "nnmamba"])
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


@pytest.mark.slow
def test_the_module_file_loads_builds_its_logic_and_names_the_missing_packages(slicerPython):
    completed = runIn(slicerPython, ["-c", LOAD_MODULE, str(MODULE_FILE), *NOT_IN_SLICER])
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["loaded"] == [], "the module pulled in packages Slicer does not ship"
    names = [requirement.split(">")[0].split("<")[0].split("=")[0] for requirement in report["missing"]]
    assert names == ["torch", "safetensors", "websockets"]  # tqdm, matplotlib: the command line's only
    assert report["busy"] is False
    # starting a worker without them says how to install them
    assert "No module named 'websockets'" in report["startError"]
    assert "by pressing Apply" in report["startError"]
    # a remote server needs only the client package, and says so instead of a bare ModuleNotFoundError
    assert [r.split(">")[0] for r in report["missingClient"]] == ["websockets"]
    assert "client for a remote server cannot be loaded" in report["remoteError"]
    assert "clientOnly=True" in report["remoteError"]


@pytest.mark.slow
def test_reload_forgets_the_library_so_its_edited_files_are_read_again(slicerPython):
    completed = runIn(slicerPython, ["-c", LOAD_MODULE, str(MODULE_FILE)])
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert "NNMambaSlicerLib" in report["forgotten"] and "NNMambaSlicerLib.InferenceLogic" in report["forgotten"]
    assert report["reloadedIsNew"] is True


@pytest.mark.slow
def test_the_result_builders_pass_on_the_older_slicer_core(slicerPython):
    tests = REPO_ROOT / "Testing" / "NNMambaSlicer" / "test_result_builders.py"
    completed = runIn(slicerPython, ["-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
                      extraPath=(REPO_ROOT, slicerPython.pytestPath))
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-2000:]
    assert " passed" in completed.stdout and "skipped" not in completed.stdout
    version = runIn(slicerPython, ["-c", "import importlib.metadata as m; print(m.version('slicer-core'))"])
    assert version.stdout.strip() == OLDER_SLICER_CORE
