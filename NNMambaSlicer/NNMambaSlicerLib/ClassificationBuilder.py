"""`ClassificationResult` -> a table node of class probabilities plus a bar chart."""

from __future__ import annotations

import numpy as np
import vtk

from nnmamba.errors import ModelError
from nnmamba.results import ClassificationResult

from .SceneHelpers import SceneHelpers

CLASS_COLUMN = "class"
PROBABILITY_COLUMN = "probability"
TOP_COLUMN = "top"


class ClassificationBuilder:
    """Builds a table (class, probability, top) in card order, a bar plot series and a chart.

    Returns (table, series, chart); the chart is what the layout's plot view shows.

    Example:
        >>> table, series, chart = ClassificationBuilder().build(result, volumeNode, "MRHead classification")
        >>> table.GetCellText(0, 0)
    """

    def build(self, result: ClassificationResult, sourceVolumeNode, name: str) -> tuple:
        probabilities = np.asarray(result.probabilities, dtype=np.float64).reshape(-1)
        self._check(result, probabilities)
        scene = sourceVolumeNode.GetScene()
        import slicer

        created = []
        try:
            table = slicer.vtkMRMLTableNode()
            table.SetName(f"{name} probabilities")
            scene.AddNode(table)
            created.append(table)
            self._fillTable(table, result, probabilities)
            SceneHelpers.placeBeside(table, sourceVolumeNode)

            series = slicer.vtkMRMLPlotSeriesNode()
            series.SetName(f"{name} probability")
            scene.AddNode(series)
            created.append(series)
            series.SetAndObserveTableNodeID(table.GetID())
            series.SetXColumnName(CLASS_COLUMN)
            series.SetLabelColumnName(CLASS_COLUMN)
            series.SetYColumnName(PROBABILITY_COLUMN)
            series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeBar)
            series.SetColor(0.2, 0.45, 0.8)

            chart = slicer.vtkMRMLPlotChartNode()
            chart.SetName(name)
            scene.AddNode(chart)
            created.append(chart)
            chart.AddAndObservePlotSeriesNodeID(series.GetID())
            chart.SetTitle(f"{name}: {result.top_class}")
            chart.SetXAxisTitle("class")
            chart.SetYAxisTitle("probability")
            chart.SetYAxisRangeAuto(False)
            chart.SetYAxisRange(0.0, 1.0)
            chart.SetLegendVisibility(False)
            SceneHelpers.placeBeside(series, sourceVolumeNode)
            SceneHelpers.placeBeside(chart, sourceVolumeNode)
        except Exception:
            SceneHelpers.removeNodes(scene, reversed(created))
            raise
        return table, series, chart

    @staticmethod
    def _fillTable(table, result: ClassificationResult, probabilities: np.ndarray) -> None:
        names = vtk.vtkStringArray()
        names.SetName(CLASS_COLUMN)
        values = vtk.vtkDoubleArray()
        values.SetName(PROBABILITY_COLUMN)
        top = vtk.vtkStringArray()
        top.SetName(TOP_COLUMN)
        topIndex = int(np.argmax(probabilities))
        for index, (className, probability) in enumerate(zip(result.class_names, probabilities)):
            names.InsertNextValue(str(className))
            values.InsertNextValue(float(probability))
            top.InsertNextValue("yes" if index == topIndex else "")
        for column in (names, values, top):
            table.AddColumn(column)

    @staticmethod
    def _check(result: ClassificationResult, probabilities: np.ndarray) -> None:
        if len(result.class_names) != probabilities.size or probabilities.size == 0:
            raise ModelError(f"model '{result.model}' returned {len(result.class_names)} class names but "
                             f"{probabilities.size} probabilities; they must match one to one.")
        if not np.all(np.isfinite(probabilities)) or probabilities.min() < 0 or probabilities.max() > 1:
            raise ModelError(f"model '{result.model}' returned probabilities outside 0..1: {probabilities.tolist()}")
