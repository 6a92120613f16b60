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


class NNMambaSlicer(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        import qt
        self.parent.title = "nnMamba"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["NNMambaSlicer developers"]
        self.parent.helpText = ("Runs nnMamba state-space-model networks on the selected volume in a background "
                                "worker: segmentation (segments in 2D and 3D), anatomical landmarks (markups) and "
                                "classification (probability table and bar chart). See docs/slicer.md.")
        self.parent.acknowledgementText = ("nnMamba: Gong et al., 'nnMamba: 3D biomedical image segmentation, "
                                           "classification and landmark detection with state space model'.")
        self.parent.icon = qt.QIcon(str(ModulePaths().resourcePath("Icons/NNMambaSlicer.png")))
        # Sample Data's modules are loaded once startup completes; the registration copes with its absence.
        from NNMambaSlicerLib.SampleDataRegistration import SampleDataRegistration
        self.sampleDataRegistration = SampleDataRegistration()
        slicer.app.connect("startupCompleted()", self.sampleDataRegistration.register)

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


class NNMambaSlicerLogic(InferenceLogic, ScriptedLoadableModuleLogic):
    """Console use: `NNMambaSlicerLogic().run(volumeNode, tasks=["segmentation"], device="cpu")` blocks and
    returns {task: nodes}; `runAsync(volumeNode, callback, ...)` returns at once (a timer polls the worker)."""

    def __init__(self, connection=None, settings=None):
        import qt
        from NNMambaSlicerLib.ViewPresenter import ViewPresenter
        # InferenceLogic first in the bases: ScriptedLoadableModuleLogic.__init__'s super() then reaches object.
        InferenceLogic.__init__(self, connection or WorkerConnection(settings or WorkerSettings()))
        ScriptedLoadableModuleLogic.__init__(self)
        self._timer = qt.QTimer()
        self._timer.setInterval(100)
        self._timer.connect("timeout()", self._onTimer)
        self.outputsAdded.connect(ViewPresenter().show)

    def submit(self, *args, **kwargs):
        jobId = InferenceLogic.submit(self, *args, **kwargs)
        self._timer.start()
        return jobId

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
        if not self.isBusy:
            self._timer.stop()


class NNMambaSlicerTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SampleVolumeEndToEnd()

    def test_SampleVolumeEndToEnd(self):
        from nnmamba.data import sample_volume_path
        from nnmamba.model_card import default_model
        from NNMambaSlicerLib.InstallLogic import InstallLogic
        missing = InstallLogic().missingRequirements()
        if missing:  # runTest is called directly (not by a unittest runner), so report instead of skipTest
            self.delayDisplay(f"Skipped: the worker's packages are not installed in Slicer's Python: {missing}. "
                              "Install them from the module's 'Device and options' section.")
            return
        self.delayDisplay("Loading the embedded sample volume")
        volume = slicer.util.loadVolume(str(sample_volume_path()))
        logic = NNMambaSlicerLogic(settings=WorkerSettings(device="cpu"))
        try:
            self.delayDisplay("Running segmentation, landmarks and classification (CPU)")
            outputs = logic.run(volume, tasks=["segmentation", "landmarks", "classification"], timeout=1800)
        finally:
            logic.close()
        segmentation = outputs["segmentation"][0]
        self.assertEqual(segmentation.GetName(), f"{volume.GetName()} segmentation")
        self.assertEqual(segmentation.GetSegmentation().GetNumberOfSegments(),
                         len(default_model("segmentation").labels))
        self.assertEqual(outputs["landmarks"][0].GetNumberOfControlPoints(),
                         len(default_model("landmarks").landmarks))
        self.assertEqual(outputs["classification"][0].GetNumberOfRows(), len(default_model("classification").classes))
        self.delayDisplay("Test passed")
