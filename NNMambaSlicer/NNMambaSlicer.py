"""nnMamba in 3D Slicer: segmentation, landmarks and classification through a background worker."""

import os
import sys

import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)

# A source checkout keeps the engine one folder up; the installed extension has it beside this file.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(_ROOT, "nnmamba", "__init__.py")) and _ROOT not in sys.path:
    sys.path.append(_ROOT)

from NNMambaSlicerLib.InferenceLogic import InferenceLogic  # noqa: E402
from NNMambaSlicerLib.Paths import ModulePaths  # noqa: E402
from NNMambaSlicerLib.WorkerConnection import WorkerConnection, WorkerSettings  # noqa: E402

LIBRARY_PACKAGE = "NNMambaSlicerLib"


def forgetLibrary(package: str = LIBRARY_PACKAGE) -> list:
    """Drop `package` and its submodules from sys.modules; returns their names.

    Slicer's Reload re-executes this file only: without this, `from NNMambaSlicerLib... import`
    would hand back the library modules loaded at start-up, and edits to them would not show."""
    names = [name for name in sys.modules if name == package or name.startswith(package + ".")]
    for name in names:
        del sys.modules[name]
    return names


def loadModuleTerminology() -> None:
    """Our terminology context (hippocampus, brain stem: not in General Anatomy) into Slicer's."""
    from NNMambaSlicerLib.Terminology import ModuleTerminology
    ModuleTerminology().loadInto(slicer.modules.terminologies.logic())


class NNMambaSlicer(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        import qt
        from slicer.i18n import tr as _, translate  # only the application has translations
        self.parent.title = _("nnMamba")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]  # Slicer's own word
        self.parent.dependencies = []
        self.parent.contributors = ["NNMambaSlicer developers"]
        self.parent.helpText = _("Runs nnMamba state-space-model networks on the selected volume in a background "
                                 "worker: segmentation (segments in 2D and 3D), anatomical landmarks (markups) and "
                                 "classification (probability table and bar chart). Research software: not for "
                                 "clinical use. See docs/slicer.md.")
        self.parent.acknowledgementText = _("nnMamba: Gong et al., 'nnMamba: 3D biomedical image segmentation, "
                                            "classification and landmark detection with state space model'.")
        self.parent.icon = qt.QIcon(str(ModulePaths().resourcePath("Icons/NNMambaSlicer.png")))
        # Sample Data's modules are loaded once startup completes; the registration copes with its absence.
        from NNMambaSlicerLib.SampleDataRegistration import SampleDataRegistration
        self.sampleDataRegistration = SampleDataRegistration()
        slicer.app.connect("startupCompleted()", self.sampleDataRegistration.register)
        # The Terminologies module is set up once the application has started.
        slicer.app.connect("startupCompleted()", loadModuleTerminology)

    def resourcePath(self, filename):
        return str(ModulePaths().resourcePath(filename))


class NNMambaSlicerWidget(ScriptedLoadableModuleWidget):
    def resourcePath(self, filename):
        return str(ModulePaths().resourcePath(filename))

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from NNMambaSlicerLib.Widget import Widget
        self.logic = NNMambaSlicerLogic()
        self.panel = Widget(self.logic)
        self.layout.addWidget(self.panel)

    def cleanup(self):
        self.panel.cleanup()

    def onReload(self):
        forgetLibrary()
        ScriptedLoadableModuleWidget.onReload(self)


class NNMambaSlicerLogic(InferenceLogic, ScriptedLoadableModuleLogic):
    """Console use: `NNMambaSlicerLogic().run(volumeNode, tasks=["segmentation"], device="cpu")` blocks and
    returns {task: nodes}; `runAsync(volumeNode, callback, ...)` returns at once (a timer polls the worker)."""

    def __init__(self, connection=None, settings=None):
        from NNMambaSlicerLib.ViewPresenter import ViewPresenter
        # InferenceLogic first in the bases: ScriptedLoadableModuleLogic.__init__'s super() then reaches object.
        InferenceLogic.__init__(self, connection or WorkerConnection(settings or WorkerSettings()))
        ScriptedLoadableModuleLogic.__init__(self)
        self._timer = None  # made on the first job: building the logic needs no Qt event loop
        self.outputsAdded.connect(ViewPresenter().show)

    def submit(self, *args, **kwargs):
        jobId = InferenceLogic.submit(self, *args, **kwargs)
        self._pollTimer().start()
        return jobId

    def _pollTimer(self):
        if self._timer is None:
            import qt
            self._timer = qt.QTimer()
            self._timer.setInterval(100)
            self._timer.connect("timeout()", self._onTimer)
        return self._timer

    def run(self, volumeNode, **kwargs):
        kwargs.setdefault("whileWaiting", slicer.app.processEvents)
        return InferenceLogic.run(self, volumeNode, **kwargs)

    def configureWorker(self, settings: WorkerSettings) -> None:
        """Use another worker (device, Python, server); the running one is stopped when it changes."""
        if settings != self.connection.settings:
            self.connection.close()
            self.connection = WorkerConnection(settings)

    def _onTimer(self):
        self.poll(0.0)
        if not self.needsPolling:
            self._pollTimer().stop()


class NNMambaSlicerTest(ScriptedLoadableModuleTest):
    """Runs the shipped models (a few MB each, CPU) on the embedded sample and checks what came back.

    It never installs anything (ctest, "Reload and Test"): the worker runs in Slicer's Python when
    that has the packages, else in the Python named by $NNMAMBA_WORKER_PYTHON or the panel's Worker
    Python setting; with neither, it fails and says how to give it one."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SampleVolumeEndToEnd()

    def workerPython(self) -> str:
        import qt
        from NNMambaSlicerLib.InstallLogic import InstallLogic
        python = os.environ.get("NNMAMBA_WORKER_PYTHON") or qt.QSettings().value("NNMambaSlicer/WorkerPython", "")
        if python:
            problem = InstallLogic.checkOtherPython(python)
            self.assertIsNone(problem, problem)
            return python
        missing = InstallLogic().missingRequirements()
        self.assertEqual(missing, [], "the worker's packages are not in Slicer's Python and the self-test installs "
                                      "nothing: install them from the module's panel, or set NNMAMBA_WORKER_PYTHON "
                                      "(or the panel's Worker Python) to a Python that has nnmamba.")
        return ""

    def test_SampleVolumeEndToEnd(self):
        from nnmamba.data import sample_volume_path
        from NNMambaSlicerLib.ResultChecks import ResultChecks
        settings = WorkerSettings(device="cpu", pythonExecutable=self.workerPython())
        self.delayDisplay("Loading the embedded sample volume")
        volume = slicer.util.loadVolume(str(sample_volume_path()))
        logic = NNMambaSlicerLogic(settings=settings)
        try:
            self.delayDisplay("Running segmentation, landmarks and classification (CPU)")
            outputs = logic.run(volume, tasks=["segmentation", "landmarks", "classification"], timeout=900)
        finally:
            logic.close()
        self.assertEqual(sorted(outputs), ["classification", "landmarks", "segmentation"])
        self.assertEqual(ResultChecks().problems(outputs, volume), [])
        for nodes in outputs.values():
            self.assertIn("not for clinical use", nodes[0].GetDescription())
        self.delayDisplay("Test passed")
