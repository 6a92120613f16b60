"""Slicer's own readers (slicer-core) open our landmark and probability files."""

from __future__ import annotations

import numpy as np
import pytest
from test_io_outputs import classification, landmarks

from nnmamba.io import write_markups, write_probabilities_tsv

slicer = pytest.importorskip("slicer")


@pytest.fixture
def scene():
    scene = slicer.vtkMRMLScene()
    selection = slicer.vtkMRMLSelectionNode()   # the markups logic expects the application's singleton
    selection.SetSingletonTag("Singleton")
    scene.AddNode(selection)
    return scene


def test_slicer_loads_the_markups_with_names_descriptions_and_lps_positions_as_ras(scene, tmp_path):
    path = write_markups(landmarks(), tmp_path / "case.mrk.json")
    logic = slicer.vtkSlicerMarkupsLogic()
    logic.SetMRMLScene(scene)
    node = scene.GetNodeByID(logic.LoadMarkups(str(path), "case"))
    assert node.GetNumberOfControlPoints() == 2
    assert node.GetNthControlPointLabel(0) == "AC"
    assert node.GetNthControlPointDescription(1) == "PC (confidence 0.41)"
    ras = [0.0, 0.0, 0.0]
    node.GetNthControlPointPosition(0, ras)
    lps = landmarks().points_lps[0]
    np.testing.assert_allclose(ras, [-lps[0], -lps[1], lps[2]], atol=1e-9)


def test_slicer_reads_the_probability_tsv_as_a_table(scene, tmp_path):
    path = write_probabilities_tsv(classification(), tmp_path / "case.probabilities.tsv")
    table = slicer.vtkMRMLTableNode()
    scene.AddNode(table)
    storage = slicer.vtkMRMLTableStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(table) == 1
    assert table.GetNumberOfRows() == 2 and table.GetColumnName(1) == "probability"
    assert table.GetCellText(1, 0) == "MR" and float(table.GetCellText(1, 1)) == pytest.approx(0.875)
