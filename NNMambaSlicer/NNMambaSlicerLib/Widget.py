"""The module's Qt panel: binds Resources/UI/NNMambaSlicer.ui to the parameter node and the logic.

GUI-only (imports qt/ctk/slicer.app). It never waits on the worker: Apply queues one job per input
volume, the logic's timer polls, and the logic's signals update the progress bar, status and
results. Everything slow (starting a worker, asking it for its models and devices, checking
another Python) runs in a BackgroundTask that the panel's own timer looks at. On a first run
without the worker's packages the status line says what is missing and Apply offers to install
them (after a confirm, pip's output in the log); nothing is installed without asking.
"""

from __future__ import annotations

import qt
import slicer
from slicer.i18n import tr as _  # the panel's words go through Slicer's translations

from .InputVolumes import InputVolumes
from .InstallLogic import InstallLogic
from .InstallSection import InstallSection
from .ModelCatalog import TASKS, ModelCatalog
from .ModelsSection import ModelsSection
from .ParameterNode import EARLIER_RESULTS, PRECISIONS, ParameterNode
from .Paths import ModulePaths
from .ResultsSection import ResultsSection
from .SceneCloseGuard import SceneCloseGuard
from .SegmentationView import SegmentationView
from .WorkerConnection import WorkerSettings
from .WorkerInquiry import WorkerInquiry
from .WorkerReadiness import INSTALL_AND_APPLY, WorkerReadiness
from .WorkerSettingsSection import WorkerSettingsSection


class Widget(qt.QWidget):
    """The panel. `logic` is the module's NNMambaSlicerLogic (an InferenceLogic with a poll timer).

    Example (what NNMambaSlicerWidget.setup does):
        >>> panel = Widget(logic)
        >>> layout.addWidget(panel)
    """

    def __init__(self, logic, parent=None) -> None:
        super().__init__(parent)
        self.logic = logic
        self.installLogic = InstallLogic()
        self.parameters = None
        self._updatingGUI = False
        self._jobIds = []                 # this panel's running job (one at a time: volumes are large)
        self._queuedVolumes = []          # 'every loaded volume': the ones still to send, in order
        self._jobRequest = {}             # the tasks, models and options of the run under way
        self._jobsInRun, self._jobsEnded, self._failures = 0, 0, []
        self.readiness = WorkerReadiness(self.installLogic)
        self.inquiry = WorkerInquiry(self.logic)
        self._shownReason = None
        self._parameterObserverTag = None

        layout = qt.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        uiWidget = slicer.util.loadUI(str(ModulePaths().resourcePath("UI/NNMambaSlicer.ui")))
        layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.progressBar.setVisible(False)
        self.ui.remoteWidget.setVisible(False)
        self.results = ResultsSection(self.ui)
        self.installSection = InstallSection(self.ui, self.installLogic, self.readiness, self._appendLog,
                                             self._checkCanApply)
        self.settingsSection = WorkerSettingsSection(self.ui, self._checkCanApply, self.onRefreshFromWorker,
                                                     self.onModelsFolderChanged)
        self.models = ModelsSection(self.ui, ModelCatalog.fromDisk([self.settingsSection.modelsFolder]))
        self._fillChoices()
        self._connectWidgets()
        self._logicConnections = [(signal, signal.connect(slot)) for signal, slot in (
            (self.logic.progress, self.onProgress),
            (self.logic.workerRestarted, self.onWorkerRestarted), (self.logic.outputsAdded, self.onOutputsAdded),
            (self.installLogic.progressInfo, self._appendLog))]
        self.sceneCloseGuard = SceneCloseGuard(slicer.mrmlScene, self.onSceneStartClose, self.initializeParameterNode)
        self._tickTimer = qt.QTimer()
        self._tickTimer.setInterval(250)
        self._tickTimer.connect("timeout()", self.onTick)
        self._tickTimer.start()
        self.initializeParameterNode()

    # -- lifecycle -------------------------------------------------------------------------------
    def cleanup(self) -> None:
        self._tickTimer.stop()
        self.sceneCloseGuard.close()
        for signal, connectionId in self._logicConnections:
            signal.disconnect(connectionId)
        self._observeParameterNode(None)
        self.logic.close()

    def onSceneStartClose(self) -> None:
        """The jobs' inputs are going: drop the jobs (nothing they send later is built), let go of the parameters."""
        self._queuedVolumes = []
        self.logic.dropJobs()
        self._observeParameterNode(None)

    def initializeParameterNode(self) -> None:
        parameters = ParameterNode.getOrCreate(slicer.mrmlScene)
        if parameters.inputVolume is None:
            volumes = InputVolumes(1).allIn(slicer.mrmlScene)
            if volumes:
                parameters.inputVolume = volumes[0]
        self._observeParameterNode(parameters)

    def _observeParameterNode(self, parameters) -> None:
        if self.parameters is not None and self._parameterObserverTag is not None:
            self.parameters.node.RemoveObserver(self._parameterObserverTag)
            self._parameterObserverTag = None
        self.parameters = parameters
        if parameters is not None:
            self._parameterObserverTag = parameters.node.AddObserver("ModifiedEvent", self.updateGUIFromParameterNode)
            self.updateGUIFromParameterNode()

    def onTick(self) -> None:
        """The panel's timer: the worker's new log lines, and the background tasks that ended."""
        for line in self.logic.connection.takeLogLines():
            self._appendLog(line)
        answer = self.inquiry.tick()
        if answer is not None:
            self._showWorkerAnswer(answer)
        problem = self.readiness.tick()
        if problem is not None:
            if problem:
                self._setStatus(problem, error=True)
            self._checkCanApply()

    # -- parameter node <-> widgets --------------------------------------------------------------
    def _connectWidgets(self) -> None:
        ui = self.ui
        for selector in [ui.inputVolumeSelector, *self.models.extraSelectors(), ui.outputSegmentationSelector]:
            selector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateParameterNodeFromGUI)
        for task in TASKS:
            getattr(ui, f"{task}CheckBox").connect("toggled(bool)", self.updateParameterNodeFromGUI)
            getattr(ui, f"{task}ModelComboBox").connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        ui.allVolumesCheckBox.connect("toggled(bool)", self.updateParameterNodeFromGUI)
        ui.deviceComboBox.connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        ui.ttaCheckBox.connect("toggled(bool)", self.updateParameterNodeFromGUI)
        ui.overlapSliderWidget.connect("valueChanged(double)", self.updateParameterNodeFromGUI)
        ui.precisionComboBox.connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        ui.earlierResultsComboBox.connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        ui.show3DCheckBox.connect("toggled(bool)", self.onShow3DToggled)
        ui.refreshModelsButton.connect("clicked(bool)", self.onRefreshFromWorker)
        ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)
        ui.applyButton.connect("clicked(bool)", self.onApply)
        ui.cancelButton.connect("clicked(bool)", self.onCancel)

    def updateGUIFromParameterNode(self, caller=None, event=None) -> None:
        if self.parameters is None or self._updatingGUI:
            return
        self._updatingGUI = True
        try:
            p, ui = self.parameters, self.ui
            ui.inputVolumeSelector.setCurrentNode(p.inputVolume)
            ui.inputVolumeSelector.enabled = not p.allVolumes
            ui.outputSegmentationSelector.setCurrentNode(p.outputSegmentation)
            ui.outputSegmentationSelector.enabled = not p.allVolumes  # one node cannot hold every volume's
            ui.allVolumesCheckBox.checked = p.allVolumes
            extras = p.extraInputVolumes
            for index, selector in enumerate(self.models.extraSelectors()):
                selector.setCurrentNode(extras[index] if index < len(extras) else None)
            for task in TASKS:
                getattr(ui, f"{task}CheckBox").checked = getattr(p, f"{task}Enabled")
                comboBox = getattr(ui, f"{task}ModelComboBox")
                # No name yet: the first model. A name this worker lacks (a scene saved with another
                # worker): nothing shown as selected, and Apply's tooltip says to choose another.
                comboBox.setCurrentIndex(comboBox.findData(p.modelFor(task)) if p.modelFor(task) else 0)
                comboBox.enabled = getattr(p, f"{task}Enabled")
            self.models.selectDevice(p.device)
            ui.remoteWidget.setVisible(p.device == "remote")
            ui.ttaCheckBox.checked = p.tta
            ui.overlapSliderWidget.value = p.overlap
            ui.precisionComboBox.setCurrentIndex(PRECISIONS.index(p.precision))
            ui.earlierResultsComboBox.setCurrentIndex(EARLIER_RESULTS.index(p.earlierResults))
            ui.show3DCheckBox.checked = p.show3D
            self.models.showFor(p)
        finally:
            self._updatingGUI = False
        self._checkCanApply()

    def updateParameterNodeFromGUI(self, *unused) -> None:
        if self.parameters is None or self._updatingGUI:
            return
        p, ui = self.parameters, self.ui
        wasModifying = p.node.StartModify()
        try:
            p.inputVolume = ui.inputVolumeSelector.currentNode()
            p.outputSegmentation = ui.outputSegmentationSelector.currentNode()
            p.allVolumes = ui.allVolumesCheckBox.checked
            p.clearExtraInputVolumes()
            for index, selector in enumerate(self.models.extraSelectors()):
                p.setExtraInputVolume(index, selector.currentNode())
            for task in TASKS:
                setattr(p, f"{task}Enabled", getattr(ui, f"{task}CheckBox").checked)
                p.setModelFor(task, getattr(ui, f"{task}ModelComboBox").currentData or "")
            p.device = ui.deviceComboBox.currentData or "auto"
            p.tta = ui.ttaCheckBox.checked
            p.overlap = ui.overlapSliderWidget.value
            p.precision = PRECISIONS[max(ui.precisionComboBox.currentIndex, 0)]
            p.earlierResults = EARLIER_RESULTS[max(ui.earlierResultsComboBox.currentIndex, 0)]
            p.show3D = ui.show3DCheckBox.checked
        finally:
            p.node.EndModify(wasModifying)

    def _checkCanApply(self) -> None:
        """Apply is enabled when a run can start, or when only packages it may install are missing
        (it then says so on the button and in the status line); its tooltip says what is missing."""
        reason = self._whyCannotApply()
        installFirst = reason is not None and self._onlyPackagesMissing(reason)
        self.ui.applyButton.enabled = reason is None or installFirst
        self.ui.applyButton.text = _(INSTALL_AND_APPLY) if installFirst else _("Apply")
        self.ui.applyButton.toolTip = reason or _("Run the selected tasks on the input volume(s).")
        # What keeps the worker from starting is the first thing a new user must read: in the status
        # line, whatever else Apply still waits for (a volume, a task).
        problem = self.readiness.whyCannotStart(self.workerSettings()) if self.parameters is not None else None
        if problem and problem != self._shownReason:
            self._setStatus(problem, error=not self.readiness.installable(self.workerSettings()))
        self._shownReason = problem
        self.ui.cancelButton.enabled = bool(self._jobIds)
        self.ui.refreshModelsButton.enabled = not (self.inquiry.busy or self._jobIds)
        self.ui.installDependenciesButton.enabled = not (self.installSection.installing or self._jobIds)

    def _whyCannotApply(self):
        p = self.parameters
        if p is None:
            return _("The module is not initialised.")
        if self.installSection.installing:
            return _("The worker's packages are being installed; wait for it to finish.")
        if self._jobIds:
            return _("A job is running; wait for it or press Cancel.")
        if self.inquiry.busy:
            return _("Asking the worker for its models and devices; a moment.")
        if not p.enabledTasks():
            return _("Tick at least one task.")
        for task in p.enabledTasks():
            reason = self.models.catalog.whyCannotRun(task, p.modelFor(task))
            if reason:
                return reason
        if p.allVolumes:
            if self._channelsNeeded() != 1:
                return _("'Run on every loaded volume' needs one-channel models; untick it and select the channels.")
            if not InputVolumes(1).allIn(slicer.mrmlScene):
                return _("Load a volume first.")
        elif p.inputVolume is None:
            return _("Select an input volume.")
        extras = p.extraInputVolumes[:self._channelsNeeded() - 1]
        missing = self._channelsNeeded() - 1 - len([v for v in extras if v is not None])
        if missing > 0 and not p.allVolumes:
            return _("The selected model needs {missing} more input channel(s); select them under Inputs.").format(
                missing=missing)
        if p.device == "remote" and self.settingsSection.whyServerNotReady():
            return self.settingsSection.whyServerNotReady()
        return self.readiness.whyCannotStart(self.workerSettings())

    def _onlyPackagesMissing(self, reason: str) -> bool:
        return (not self.installSection.installing and not self._jobIds and self.parameters is not None
                and reason == self.readiness.whyCannotStart(self.workerSettings())
                and self.readiness.installable(self.workerSettings()))

    # -- models, devices and channels ------------------------------------------------------------
    def _fillChoices(self) -> None:
        """Refill the model and device boxes from the catalogue, without echoing into the parameter node."""
        self.logic.resultNodes.qualities = self.models.catalog.qualities()  # the nodes say what the panel said
        self._updatingGUI = True
        try:
            self.models.fill()
        finally:
            self._updatingGUI = False

    def _selectedEntry(self, task: str):
        return self.models.selectedEntry(self.parameters, task)

    def _channelsNeeded(self) -> int:
        return self.models.channelsNeeded(self.parameters)

    def onModelsFolderChanged(self, path: str) -> None:
        # A running local worker was started with the old folder: the next Apply or refresh restarts it
        # with the new one (the settings differ), so until then the cards on disk are what it will see.
        self.models.catalog = ModelCatalog.fromDisk([path])
        self._fillChoices()
        self.updateGUIFromParameterNode()

    def onRefreshFromWorker(self) -> None:
        """Start (or reach) the worker off the GUI thread, then ask it for its models and devices."""
        settings = self.workerSettings()
        problem = self.readiness.whyCannotStart(settings)
        if problem:
            self._setStatus(problem, error=not self.readiness.checking)
            return
        self.logic.configureWorker(settings)
        self.inquiry.start()
        self._setStatus(_("Asking {worker} for its models and devices...").format(worker=self.logic.connection.describe()))
        self._checkCanApply()

    def _showWorkerAnswer(self, answer) -> None:
        if answer.error:
            self._setStatus(f"{answer.error[:1].upper()}{answer.error[1:]}. The panel still lists the "
                            f"{self.models.catalog.source}.", error=True)
        else:
            self.models.catalog, self.models.devices = answer.catalog, answer.devices
            self._fillChoices()
            self._setStatus(f"{len(answer.catalog.entries)} model(s) and {len(answer.devices.items)} device choice(s) "
                            f"from {answer.where}.")
        self.updateGUIFromParameterNode()

    # -- worker settings and dependencies --------------------------------------------------------
    def workerSettings(self) -> WorkerSettings:
        return self.settingsSection.workerSettings(self.parameters.device if self.parameters is not None else "auto")

    def onInstallDependencies(self) -> None:
        """Check again (another Python), or install what is missing here (a remote server: the client only)."""
        settings = self.workerSettings()
        if settings.pythonExecutable and not settings.isRemote:
            self.readiness.recheck(settings.pythonExecutable)  # checked again, off the GUI thread
            self._setStatus(self.readiness.whyCannotStart(settings))
            self._checkCanApply()
            return
        if self.installSection.install(settings):
            self._setStatus(_("The worker's dependencies are in place."))

    def _appendLog(self, line: str) -> None:
        self.ui.workerLogTextEdit.appendPlainText(str(line).rstrip())

    # -- running ---------------------------------------------------------------------------------
    def _inputVolumes(self) -> list:
        if self.parameters.allVolumes:
            return InputVolumes(1).allIn(slicer.mrmlScene)
        return [self.parameters.inputVolume]

    def onApply(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("nnMamba could not start the job."), waitCursor=False):
            p = self.parameters
            if self.readiness.installable(self.workerSettings()) and not self.installSection.install(self.workerSettings()):
                return  # declined or failed: the status line and the log say why
            volumes = self._inputVolumes()
            replace = self._askReplace(volumes, p.enabledTasks())
            if replace is None:
                return
            self.logic.configureWorker(self.workerSettings())
            self.logic.resultNodes.closedSurfaces = p.show3D  # off: no seconds spent on surfaces nobody sees
            # The model shown is the model run: name it, as the worker's default may be another one.
            self._jobRequest = dict(tasks=p.enabledTasks(), replaceExisting=replace, **p.workerOptions(),
                                    models={task: self._selectedEntry(task).name for task in p.enabledTasks()},
                                    outputSegmentation=None if p.allVolumes else p.outputSegmentation,
                                    extraChannels=[] if p.allVolumes else
                                    p.extraInputVolumes[:self._channelsNeeded() - 1])  # the card's order
            self._jobsInRun, self._jobsEnded, self._failures = len(volumes), 0, []
            self._queuedVolumes = list(volumes)
            self._sendNextVolume()
            self.ui.progressBar.setVisible(True)
            self.ui.progressBar.value = 0
            self.results.clear()
            self._setStatus(f"Starting {self.logic.connection.describe()} and sending "
                            f"{'the volume' if len(volumes) == 1 else f'the first of {len(volumes)} volumes'}...")
            self._checkCanApply()

    def _sendNextVolume(self) -> None:
        """One job at a time: each volume is copied and sent only when the one before has ended."""
        volume = self._queuedVolumes.pop(0)
        self._jobIds.append(self.logic.runAsync(volume, self.onFinished, **self._jobRequest))

    def _askReplace(self, volumeNodes, tasks):
        """True: replace earlier outputs; False: keep both; None: the user cancelled."""
        policy = self.parameters.earlierResults
        if policy != "ask":
            return policy == "replace"
        existing = {}
        for volumeNode in volumeNodes:
            for nodes in self.logic.existingOutputs(volumeNode, tasks).values():
                existing.setdefault(volumeNode.GetName(), []).extend(nodes)
        if not existing:
            return False
        names = sorted({node.GetName() for nodes in existing.values() for node in nodes
                        if not node.IsA("vtkMRMLPlotSeriesNode")})
        box = qt.QMessageBox(qt.QMessageBox.Question, "nnMamba: earlier results",
                             "These volumes already have results of this module:\n  " + "\n  ".join(names)
                             + "\n\nReplace them once the new results are ready? (No keeps them and adds the new "
                               "results beside them. 'Earlier results' under Outputs stops this question.)",
                             qt.QMessageBox.Yes | qt.QMessageBox.No | qt.QMessageBox.Cancel)
        answer = box.exec_()
        if answer == qt.QMessageBox.Cancel:
            return None
        return answer == qt.QMessageBox.Yes

    def onCancel(self) -> None:
        self._queuedVolumes = []
        for jobId in list(self._jobIds):
            self.logic.cancel(jobId)
        if self._jobIds:
            self._setStatus(_("Cancelling..."))

    def onProgress(self, jobId: str, fraction: float, stage: str) -> None:
        if jobId not in self._jobIds:
            return
        overall = (self._jobsEnded + fraction) / max(self._jobsInRun, 1)
        self.ui.progressBar.value = int(round(100 * overall))
        text = stage[:1].upper() + stage[1:] if stage else _("Working...")
        if self._jobsInRun > 1:
            text = _("Volume {number} of {count}: {stage}").format(number=self._jobsEnded + 1, count=self._jobsInRun,
                                                                   stage=text)
        self._setStatus(text)

    def onFinished(self, outcome) -> None:
        """Each job's own callback (runAsync): show it, then send the next volume or end the run."""
        if outcome.jobId not in self._jobIds:
            return
        self._jobIds.remove(outcome.jobId)
        self._jobsEnded += 1
        if outcome.succeeded:
            self.results.show(outcome)
        elif outcome.status.value != "cancelled":
            self._failures.append(outcome.message)
        elif outcome.message.startswith("Cancelled: the scene was closed"):
            self._queuedVolumes = []  # the rest of the run went with the scene
        if self._queuedVolumes:
            try:
                self._sendNextVolume()
                return
            except Exception as error:  # a queued volume removed meanwhile: say so, end the run
                self._queuedVolumes = []
                self._failures.append(f"The next volume could not be sent: {error}")
        if self._jobIds:
            return
        self.ui.progressBar.setVisible(False)
        if self._failures:
            self._setStatus(self._failures[-1], error=True)
            slicer.util.errorDisplay("\n\n".join(self._failures), windowTitle="nnMamba")
        elif outcome.succeeded:
            done = "" if self._jobsInRun == 1 else f"{self._jobsInRun} volumes done. Last: "
            self._setStatus(done + outcome.message)
        else:
            self._setStatus(outcome.message or _("Cancelled."))
        if not self.models.catalog.fromWorkerList and self.logic.connection.isStarted:
            self.inquiry.start()  # the worker is up now: show its own models and devices
        self._checkCanApply()

    def onWorkerRestarted(self, message: str) -> None:
        self._setStatus(message, error=True)

    def onOutputsAdded(self, sourceVolumeNode, outputs: dict) -> None:
        if self.parameters is not None:
            SegmentationView().show3D(outputs.get("segmentation", []), self.parameters.show3D)

    def onShow3DToggled(self, visible: bool) -> None:
        self.updateParameterNodeFromGUI()
        for volumeNode in self._inputVolumes() if self.parameters is not None else []:
            if volumeNode is not None:
                outputs = self.logic.existingOutputs(volumeNode, ["segmentation"])
                SegmentationView().show3D(outputs.get("segmentation", []), visible)

    def _setStatus(self, text: str, error: bool = False) -> None:
        self.ui.statusLabel.text = text
        self.ui.statusLabel.setStyleSheet("color: #c62828;" if error else "")
