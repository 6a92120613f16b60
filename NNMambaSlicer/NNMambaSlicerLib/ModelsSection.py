"""The panel's model and device choices: the combo boxes, what each model is (and how far to trust
it), the extra channel selectors a model needs, and where the lists came from.

GUI-only (qt). The lists themselves are `ModelCatalog` and `DeviceChoices`: the local cards and
the usual devices until the worker answers with its own.
"""

from __future__ import annotations

import qt
from slicer.i18n import tr as _

from .DeviceChoices import DeviceChoices
from .InputVolumes import InputVolumes
from .ModelCatalog import TASKS, ModelCatalog
from .ParameterNode import EXTRA_SLOTS

REMOTE_ITEM = ("remote", "Remote server")


class ModelsSection:
    """Example (the panel):
        >>> models = ModelsSection(ui, ModelCatalog.fromDisk([folder]))
        >>> models.fill(); models.showFor(parameters)
        >>> models.selectedEntry(parameters, "segmentation").name
        'brain-structures-seg'
    """

    def __init__(self, ui, catalog: ModelCatalog, devices: DeviceChoices = None) -> None:
        self.ui = ui
        self.catalog = catalog
        self.devices = devices or DeviceChoices.usual()

    def fill(self) -> None:
        """Refill the model and device boxes (the caller blocks the boxes' change handlers meanwhile)."""
        for task in TASKS:
            comboBox = getattr(self.ui, f"{task}ModelComboBox")
            comboBox.clear()
            for entry in self.catalog.forTask(task):
                comboBox.addItem(entry.label, entry.name)
                comboBox.setItemData(comboBox.count - 1, entry.summary, qt.Qt.ToolTipRole)
        self.ui.deviceComboBox.clear()
        for value, label in [*self.devices.items, REMOTE_ITEM]:
            self.ui.deviceComboBox.addItem(label, value)

    def selectDevice(self, device: str) -> None:
        comboBox = self.ui.deviceComboBox
        if comboBox.findData(device) < 0:  # chosen earlier (a saved scene) but not reported by this worker
            comboBox.insertItem(comboBox.count - 1, f"{device} (not reported by the worker)", device)
        comboBox.setCurrentIndex(comboBox.findData(device))

    def selectedEntry(self, parameters, task: str):
        return self.catalog.find(task, parameters.modelFor(task) if parameters is not None else "")

    def channelsNeeded(self, parameters) -> int:
        entries = [self.selectedEntry(parameters, task) for task in parameters.enabledTasks()]
        return max([len(entry.channels) for entry in entries if entry is not None] or [1])

    def extraSelectors(self) -> list:
        return [getattr(self.ui, f"extraVolumeSelector{index + 1}") for index in range(EXTRA_SLOTS)]

    def showFor(self, parameters) -> None:
        """Input types, channel slots, model descriptions and sources for the chosen tasks and models."""
        types = InputVolumes(self.channelsNeeded(parameters)).nodeTypes()  # RGB only for 3-channel models
        if list(self.ui.inputVolumeSelector.nodeTypes) != types:
            self.ui.inputVolumeSelector.nodeTypes = types
        entries = [e for e in (self.selectedEntry(parameters, t) for t in parameters.enabledTasks()) if e is not None]
        channels = max(entries, key=lambda e: len(e.channels)).channels if entries else ()
        for index in range(EXTRA_SLOTS):
            visible = index + 1 < len(channels)
            label = getattr(self.ui, f"extraVolumeLabel{index + 1}")
            label.setVisible(visible)
            getattr(self.ui, f"extraVolumeSelector{index + 1}").setVisible(visible)
            if visible:
                label.text = f"{channels[index + 1]} volume:"
        self.ui.modelInfoLabel.text = "<br>".join(
            f"{entry.task.capitalize()}: {entry.description or entry.summary} <b>{entry.trustNote}</b>"
            for entry in entries)
        self._showSources(parameters.device == "remote")

    def _showSources(self, remote: bool) -> None:
        problems = "".join(f"<br><b>Not readable:</b> {problem}" for problem in self.catalog.problems)
        self.ui.modelSourceLabel.text = f"Listing the {self.catalog.source}.{problems}"
        self.ui.deviceSourceLabel.text = f"Devices: {self.devices.source}."
        if remote:
            self.ui.logSourceLabel.text = _("A remote server keeps its own log (in the terminal where `nnmamba serve` "
                                            "runs); progress and errors of your jobs are shown above.")
        else:
            self.ui.logSourceLabel.text = _("Output of the local worker process, and of installs started here.")
