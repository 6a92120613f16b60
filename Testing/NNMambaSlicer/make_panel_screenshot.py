"""Draws the module's panel (Resources/UI/NNMambaSlicer.ui) as a user meets it on a first run, to
Resources/Screenshots/panel-first-run.png, offscreen. Used for docs/slicer.md.

There is no Slicer application here, so the .ui is loaded by plain Qt (PyQt5) with stock stand-ins
for Slicer's own widgets: a combo box for each MRML node selector, a group box for each CTK
collapsible button, a line edit for a path box, a spin box for the slider. The texts are the
module's own: the shipped model cards' labels and trust notes, the usual devices, and what
WorkerReadiness says for the packages Slicer lacks.

    pip install PyQt5 && python Testing/NNMambaSlicer/make_panel_screenshot.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "NNMambaSlicer"))
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

UI_FILE = REPO_ROOT / "Resources" / "UI" / "NNMambaSlicer.ui"
OUTPUT = REPO_ROOT / "Resources" / "Screenshots" / "panel-first-run.png"
STAND_INS = {"qMRMLWidget": "QWidget", "qMRMLNodeComboBox": "QComboBox", "ctkCollapsibleButton": "QGroupBox",
             "ctkPathLineEdit": "QLineEdit", "ctkSliderWidget": "QDoubleSpinBox"}
KEPT_PROPERTIES = {"text", "toolTip", "checked", "wordWrap", "enabled", "value", "minimum", "maximum",
                   "singleStep", "placeholderText", "readOnly", "columnCount"}
SLICER_LACKS = ["torch>=2.1,<3", "safetensors>=0.4", "websockets>=15.0"]  # what a fresh Slicer is missing


def plainQtUi() -> str:
    """The .ui with Slicer's widgets replaced by stock Qt ones (and their own properties dropped)."""
    root = ElementTree.parse(UI_FILE).getroot()
    for parent in root.iter():
        for child in list(parent):
            if child.tag in ("customwidgets", "connections"):
                parent.remove(child)
    for widget in root.iter("widget"):
        custom = widget.get("class")
        if custom not in STAND_INS:
            continue
        widget.set("class", STAND_INS[custom])
        for prop in list(widget.findall("property")):
            if prop.get("name") not in KEPT_PROPERTIES:
                widget.remove(prop)
            elif custom == "ctkCollapsibleButton" and prop.get("name") == "text":
                prop.set("name", "title")  # a group box's caption
    return ElementTree.tostring(root, encoding="unicode")


def firstRunTexts() -> dict:
    from NNMambaSlicerLib.DeviceChoices import DeviceChoices
    from NNMambaSlicerLib.InstallLogic import InstallLogic
    from NNMambaSlicerLib.ModelCatalog import ModelCatalog
    from NNMambaSlicerLib.WorkerConnection import WorkerSettings
    from NNMambaSlicerLib.WorkerReadiness import INSTALL_AND_APPLY, WorkerReadiness

    class FreshSlicer(InstallLogic):
        def missingRequirements(self, clientOnly: bool = False) -> list:
            return [r for r in SLICER_LACKS if not clientOnly or r.startswith("websockets")]

        @staticmethod
        def platformProblem(*args, **kwargs):
            return None

    catalog = ModelCatalog.fromDisk()
    return {"catalog": catalog, "devices": DeviceChoices.usual(), "applyText": INSTALL_AND_APPLY,
            "status": WorkerReadiness(FreshSlicer()).whyCannotStart(WorkerSettings())}


def main() -> Path:
    from PyQt5 import QtWidgets, uic

    application = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    with tempfile.NamedTemporaryFile("w", suffix=".ui", delete=False) as handle:
        handle.write(plainQtUi())
    panel = uic.loadUi(handle.name)
    os.unlink(handle.name)
    texts = firstRunTexts()
    panel.inputVolumeSelector.addItem("MRHead")
    panel.outputSegmentationSelector.addItem("Create new segmentation")
    for task in ("segmentation", "landmarks", "classification"):
        comboBox = getattr(panel, f"{task}ModelComboBox")
        for entry in texts["catalog"].forTask(task):
            comboBox.addItem(entry.label)
    panel.segmentationCheckBox.setChecked(True)
    panel.landmarksCheckBox.setChecked(True)
    entry = texts["catalog"].forTask("segmentation")[0]
    panel.modelInfoLabel.setText(f"Segmentation: {entry.description or entry.summary} <b>{entry.trustNote}</b>")
    source = texts["catalog"].source.replace(str(REPO_ROOT), "<extension>")  # not this machine's folders
    panel.modelSourceLabel.setText(f"Listing the {source}.")
    panel.deviceComboBox.clear()
    for _, label in [*texts["devices"].items, ("remote", "Remote server")]:
        panel.deviceComboBox.addItem(label)
    panel.deviceSourceLabel.setText(f"Devices: {texts['devices'].source}.")
    for name in ("extraVolumeLabel1", "extraVolumeSelector1", "extraVolumeLabel2", "extraVolumeSelector2",
                 "extraVolumeLabel3", "extraVolumeSelector3", "remoteWidget", "progressBar"):
        getattr(panel, name).setVisible(False)
    panel.applyButton.setText(texts["applyText"])
    panel.applyButton.setEnabled(True)  # only installable packages are missing: Apply offers the install
    panel.cancelButton.setEnabled(False)
    panel.statusLabel.setText(texts["status"])
    panel.resize(460, panel.sizeHint().height())
    panel.show()
    application.processEvents()
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    if not panel.grab().save(str(OUTPUT)):
        raise RuntimeError(f"could not write {OUTPUT}")
    return OUTPUT


if __name__ == "__main__":
    print(main())
