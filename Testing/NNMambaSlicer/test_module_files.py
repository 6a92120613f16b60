"""The module's files: the .ui has every widget the panel code uses, packaging lists every file,
nothing imports torch, the MRML library imports without Qt, resources are found in both layouts."""

from __future__ import annotations

import ast
import json
import re
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO_ROOT / "NNMambaSlicer"
LIB_DIR = MODULE_DIR / "NNMambaSlicerLib"
UI_FILE = REPO_ROOT / "Resources" / "UI" / "NNMambaSlicer.ui"
# import qt/ctk/slicer.app: loaded only inside Slicer (the panel and its sections)
GUI_ONLY = {"Widget", "ViewPresenter", "ModelsSection", "ResultsSection", "WorkerSettingsSection", "InstallSection"}
PANEL_FILES = ("Widget", "ModelsSection", "ResultsSection", "WorkerSettingsSection", "InstallSection")


def panelSource() -> str:
    return "\n".join((LIB_DIR / f"{name}.py").read_text() for name in PANEL_FILES)

QT_CLASSES = {"QWidget", "QLabel", "QCheckBox", "QComboBox", "QPushButton", "QLineEdit", "QProgressBar",
              "QTableWidget", "QPlainTextEdit"}
# Signals the panel connects to, per widget class (Qt / CTK / Slicer documentation).
SIGNALS = {
    "qMRMLNodeComboBox": {"currentNodeChanged(vtkMRMLNode*)"},
    "QCheckBox": {"toggled(bool)"},
    "QComboBox": {"currentIndexChanged(int)"},
    "ctkSliderWidget": {"valueChanged(double)"},
    "ctkPathLineEdit": {"currentPathChanged(QString)"},
    "QPushButton": {"clicked(bool)"},
}


def uiWidgets() -> dict:
    root = ElementTree.parse(UI_FILE).getroot()
    return {w.get("name"): w.get("class") for w in root.iter("widget")}


def widgetNamesUsedByPanel() -> set:
    source = panelSource()
    names = set(re.findall(r"\bui\.(\w+)", source))
    # f-string lookups: getattr(self.ui, f"{task}CheckBox") and f"extraVolumeLabel{index + 1}"
    for template in re.findall(r'getattr\((?:self\.)?ui, f"([^"]+)"\)', source):
        if "{task}" in template:
            names |= {template.replace("{task}", t) for t in ("segmentation", "landmarks", "classification")}
        elif "{index + 1}" in template:
            names |= {template.replace("{index + 1}", str(i)) for i in (1, 2, 3)}
        else:
            raise AssertionError(f"a widget name template the test cannot expand: {template}")
    return names


def test_every_widget_the_panel_uses_exists_in_the_ui_file():
    widgets = uiWidgets()
    missing = sorted(widgetNamesUsedByPanel() - set(widgets))
    assert not missing, f"the panel uses widgets that NNMambaSlicer.ui lacks: {missing}"


def test_the_ui_file_uses_only_qt_classes_and_declared_custom_widgets():
    root = ElementTree.parse(UI_FILE).getroot()
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    used = set(uiWidgets().values())
    assert used <= QT_CLASSES | declared, used - QT_CLASSES - declared
    assert root.find("widget").get("class") == "qMRMLWidget"  # gives the node selectors their scene


def test_signals_the_panel_connects_exist_on_those_widgets():
    widgets = uiWidgets()
    source = panelSource()
    direct = re.findall(r'ui\.(\w+)\.connect\("([^"]+)"', source)
    perTask = re.findall(r'getattr\(ui, f"\{task\}(\w+)"\)\.connect\("([^"]+)"', source)
    assert len(direct) >= 8 and len(perTask) == 2  # the test reads the connections it means to
    for name, signal in direct:
        assert signal in SIGNALS.get(widgets[name], set()), f"{name} ({widgets[name]}) has no signal {signal}"
    for template, signal in perTask:
        assert signal in SIGNALS[widgets["segmentation" + template]], (template, signal)
    selectors = re.findall(r'selector\.connect\("([^"]+)"', source)
    assert selectors == ["currentNodeChanged(vtkMRMLNode*)"]  # every node selector, in one loop


def test_node_selectors_offer_volume_nodes_and_are_wired_to_the_scene():
    root = ElementTree.parse(UI_FILE).getroot()
    selectors = [w for w in root.iter("widget") if w.get("class") == "qMRMLNodeComboBox"]
    assert len(selectors) == 5
    for selector in selectors:
        types = [s.text for s in selector.find("property[@name='nodeTypes']").iter("string")]
        expected = "vtkMRMLSegmentationNode" if selector.get("name") == "outputSegmentationSelector" else \
            "vtkMRMLScalarVolumeNode"
        assert expected in types, selector.get("name")
    receivers = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    assert receivers == {s.get("name") for s in selectors}


def test_device_and_precision_boxes_list_the_parameter_node_choices_in_order():
    from NNMambaSlicerLib.ParameterNode import DEVICES, PRECISIONS

    root = ElementTree.parse(UI_FILE).getroot()
    def items(name):
        widget = next(w for w in root.iter("widget") if w.get("name") == name)
        return [i.find("property/string").text for i in widget.findall("item")]
    assert len(items("deviceComboBox")) == len(DEVICES) and items("deviceComboBox")[-1] == "Remote server"
    assert items("precisionComboBox") == list(PRECISIONS)


def test_module_cmake_lists_every_library_file():
    cmake = (MODULE_DIR / "CMakeLists.txt").read_text()
    listed = set(re.findall(r"\$\{MODULE_NAME\}Lib/(\w+\.py)", cmake))
    assert listed == {p.name for p in LIB_DIR.glob("*.py")}
    assert "WITH_GENERIC_TESTS" in cmake and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in cmake
    for folder in ("Resources/", "nnmamba/", "models/"):
        assert f"${{PROJECT_SOURCE_DIR}}/{folder}" in cmake, f"{folder} is not installed with the module"


def test_extension_metadata_is_complete():
    cmake = (REPO_ROOT / "CMakeLists.txt").read_text()
    for variable in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert re.search(rf"set\(EXTENSION_{variable} ", cmake), variable
    assert "add_subdirectory(NNMambaSlicer)" in cmake
    entry = json.loads((REPO_ROOT / "NNMamba.json").read_text())
    allowed = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
               "build_subdirectory", "enabled", "tier"}  # Slicer's catalog entry schema v1.0.1
    assert {"$schema", "category", "scm_url"} <= set(entry) <= allowed
    assert entry["category"] == re.search(r'set\(EXTENSION_CATEGORY "([^"]+)"\)', cmake).group(1)


def test_icon_is_a_128_pixel_png_and_the_licence_is_apache_2():
    data = (REPO_ROOT / "Resources" / "Icons" / "NNMambaSlicer.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (128, 128)
    assert "Apache License" in (REPO_ROOT / "LICENSE.txt").read_text()[:200]
    assert 'license = "Apache-2.0"' in (REPO_ROOT / "pyproject.toml").read_text()


def test_no_module_file_imports_torch():
    for path in [MODULE_DIR / "NNMambaSlicer.py", *LIB_DIR.glob("*.py")]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "torch" for n in names), f"{path.name} imports torch"


def test_the_mrml_library_imports_in_a_python_without_qt_and_loads_no_torch():
    modules = sorted(p.stem for p in LIB_DIR.glob("*.py") if p.stem not in GUI_ONLY | {"__init__"})
    code = ("import sys; sys.path.insert(0, sys.argv[1])\n"
            "for name in sys.argv[2:]: __import__('NNMambaSlicerLib.' + name)\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "assert 'qt' not in sys.modules\n")
    completed = subprocess.run([sys.executable, "-c", code, str(MODULE_DIR), *modules], capture_output=True,
                               text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr


def test_resources_are_found_from_a_checkout_and_from_the_installed_layout(tmp_path):
    from NNMambaSlicerLib.Paths import ModulePaths

    assert ModulePaths().resourcePath("UI/NNMambaSlicer.ui") == UI_FILE
    assert ModulePaths().engineRoot() == REPO_ROOT
    # the installed extension: module file, Lib, Resources, nnmamba and models side by side
    installed = tmp_path / "qt-scripted-modules"
    shutil.copytree(MODULE_DIR / "NNMambaSlicerLib", installed / "NNMambaSlicerLib")
    shutil.copytree(REPO_ROOT / "Resources" / "UI", installed / "Resources" / "UI")
    (installed / "nnmamba").mkdir()
    (installed / "nnmamba" / "__init__.py").write_text("")
    paths = ModulePaths(installed)
    assert paths.resourcePath("UI/NNMambaSlicer.ui") == installed / "Resources" / "UI" / "NNMambaSlicer.ui"
    assert paths.engineRoot() == installed
    with pytest.raises(FileNotFoundError, match="resource 'Icons/none.png' not found"):
        paths.resourcePath("Icons/none.png")


def test_every_module_file_compiles():
    for path in [MODULE_DIR / "NNMambaSlicer.py", *LIB_DIR.glob("*.py")]:
        compile(path.read_text(), str(path), "exec")


def test_the_cmake_globs_pick_up_every_shipped_model_and_engine_file():
    """The install globs (module CMakeLists.txt) must match the files the engine finds at run time."""
    cmake = (MODULE_DIR / "CMakeLists.txt").read_text()
    models = re.search(r"file\((GLOB_RECURSE|GLOB) _model_files RELATIVE \S+\s+(.*?)\)", cmake, re.S)
    patterns = [p.replace("${PROJECT_SOURCE_DIR}/", "") for p in models.group(2).split()]
    recursive = models.group(1) == "GLOB_RECURSE"
    from nnmamba import model_card

    for card in model_card.list_models():
        registration = card.landmark_registration
        extras = [] if registration is None else [card.path.parent / registration.image,
                                                  card.path.parent / registration.brain_mask]
        for path in [card.path, card.weights_path] + extras:
            assert path.is_file(), f"{card.name} needs {path}"
            relative = path.resolve().relative_to(REPO_ROOT)
            assert any(_globMatches(relative, p, recursive) for p in patterns), f"{relative} would not be installed"


def _globMatches(relative: Path, pattern: str, recursive: bool) -> bool:
    """CMake's file(GLOB): '*' stays within one folder; GLOB_RECURSE also descends below the pattern's folder."""
    import fnmatch

    folder, _, namePattern = pattern.rpartition("/")
    parts, folderParts = relative.parent.parts, folder.split("/")
    if len(parts) < len(folderParts) or (not recursive and len(parts) != len(folderParts)):
        return False
    return all(fnmatch.fnmatch(p, f) for p, f in zip(parts, folderParts)) and fnmatch.fnmatch(relative.name, namePattern)


def test_the_console_example_in_the_docs_uses_only_existing_names():
    import dataclasses

    from NNMambaSlicerLib.InferenceLogic import InferenceLogic
    from NNMambaSlicerLib.WorkerConnection import WorkerSettings

    doc = (REPO_ROOT / "docs" / "slicer.md").read_text()
    example = doc.split("## Python console", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    compile(example, "docs/slicer.md", "exec")
    entry = ast.parse((MODULE_DIR / "NNMambaSlicer.py").read_text())
    entryMethods = {f.name for c in ast.walk(entry) if isinstance(c, ast.ClassDef) and c.name == "NNMambaSlicerLogic"
                    for f in c.body if isinstance(f, ast.FunctionDef)}
    methods = set(re.findall(r"\blogic\.(\w+)\(", example))
    assert methods and all(hasattr(InferenceLogic, m) or m in entryMethods for m in methods), methods
    fields = {f.name for f in dataclasses.fields(WorkerSettings)}
    for call in re.findall(r"WorkerSettings\(([^)]*)\)", example):
        assert set(re.findall(r"(\w+)=", call)) <= fields, call


def test_the_earlier_results_box_lists_the_parameter_node_policies_in_order():
    from NNMambaSlicerLib.ParameterNode import EARLIER_RESULTS

    root = ElementTree.parse(UI_FILE).getroot()
    widget = next(w for w in root.iter("widget") if w.get("name") == "earlierResultsComboBox")
    labels = [i.find("property/string").text for i in widget.findall("item")]
    assert [label.split()[0].lower() for label in labels] == ["ask", "replace", "keep"] == list(EARLIER_RESULTS)

def test_every_precision_the_docs_show_is_one_the_worker_accepts():
    from nnmamba.inference.options import PRECISIONS

    shown = set()
    for doc in [REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")]:
        shown |= set(re.findall(r"""precision\s*=\s*["']([^"']+)["']""", doc.read_text()))
    assert shown and shown <= set(PRECISIONS), shown - set(PRECISIONS)


def test_the_extension_depends_on_pytorch_in_cmake_and_in_the_catalog_entry():
    cmake = (REPO_ROOT / "CMakeLists.txt").read_text()
    assert re.search(r'set\(EXTENSION_DEPENDS "PyTorch"\)', cmake)
    assert json.loads((REPO_ROOT / "NNMamba.json").read_text())["build_dependencies"] == ["PyTorch"]


def test_console_programs_started_on_windows_get_no_console_window():
    """Every subprocess call in the module's library and the local worker says how it hides its window."""
    files = [LIB_DIR / "InstallLogic.py", REPO_ROOT / "nnmamba" / "worker" / "local.py"]
    calls = 0
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("subprocess.run", "subprocess.Popen"):
                calls += 1
                keywords = {k.arg for k in node.keywords if k.arg} | {ast.unparse(k.value) for k in node.keywords
                                                                      if k.arg is None}
                assert keywords & {"creationflags", "NO_CONSOLE_WINDOW", "_new_process_group()"}, \
                    f"{path.name}:{node.lineno} starts a process without CREATE_NO_WINDOW on Windows"
    assert calls >= 3
    assert "CREATE_NO_WINDOW" in (REPO_ROOT / "nnmamba" / "worker" / "local.py").read_text()
