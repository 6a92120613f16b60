"""`ClassificationResult` -> a table node of class probabilities plus a bar chart named by class."""

from __future__ import annotations

import colorsys

import numpy as np
import vtk

from nnmamba.errors import ModelError
from nnmamba.results import ClassificationResult

from .SceneHelpers import SceneHelpers

CLASS_COLUMN = "class"
PROBABILITY_COLUMN = "probability"
TOP_COLUMN = "top"


class ClassificationBuilder:
    """Builds a table (class, probability, top) in card order and a bar chart of it.

    Slicer's plot view labels a bar chart's x axis with row numbers only (string tick labels are
    a TODO in qMRMLPlotView), so one bar series per class, named by the class, makes the chart's
    legend name every bar. The series read a one-row "chart data" table (a column per class).

    Returns (table, chart data table, the series in class order..., chart): the table first,
    the chart last.

    Example:
        >>> nodes = ClassificationBuilder().build(result, volumeNode, "MRHead classification")
        >>> table, chart = nodes[0], nodes[-1]
        >>> table.GetCellText(0, 0)
    """

    def build(self, result: ClassificationResult, sourceVolumeNode, name: str) -> tuple:
        probabilities = np.asarray(result.probabilities, dtype=np.float64).reshape(-1)
        self._check(result, probabilities)
        scene = sourceVolumeNode.GetScene()
        import slicer

        created = []

        def add(node, nodeName):
            node.SetName(nodeName)
            scene.AddNode(node)
            created.append(node)
            SceneHelpers.placeBeside(node, sourceVolumeNode)
            return node

        try:
            table = add(slicer.vtkMRMLTableNode(), f"{name} probabilities")
            self._fillTable(table, result, probabilities)
            chartData = add(slicer.vtkMRMLTableNode(), f"{name} chart data")
            columnNames = self._fillChartData(chartData, result, probabilities)
            seriesNodes = []
            for index, columnName in enumerate(columnNames):
                series = add(slicer.vtkMRMLPlotSeriesNode(), columnName)
                series.SetAndObserveTableNodeID(chartData.GetID())
                series.SetYColumnName(columnName)
                series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeBar)
                series.SetColor(*self.classColor(index, len(columnNames)))
                seriesNodes.append(series)

            chart = add(slicer.vtkMRMLPlotChartNode(), name)
            for series in seriesNodes:
                chart.AddAndObservePlotSeriesNodeID(series.GetID())
            chart.SetTitle(f"{name}: {result.top_class}")
            chart.SetXAxisTitle("")
            chart.SetYAxisTitle("probability")
            chart.SetYAxisRangeAuto(False)
            chart.SetYAxisRange(0.0, 1.0)
            chart.SetLegendVisibility(True)  # the legend is what names the bars
        except Exception:
            SceneHelpers.removeNodes(scene, reversed(created))
            raise
        return (table, chartData, *seriesNodes, chart)

    @staticmethod
    def classColor(index: int, count: int) -> tuple:
        """Distinct hues around the colour wheel, so neighbouring bars differ."""
        return colorsys.hsv_to_rgb(index / max(count, 1), 0.65, 0.85)

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
    def _fillChartData(table, result: ClassificationResult, probabilities: np.ndarray) -> list:
        """One row, one column per class (named by the class, made unique); returns the column names."""
        columnNames = []
        for className, probability in zip(result.class_names, probabilities):
            columnName = str(className)
            while columnName in columnNames:  # a table's columns are found by name
                columnName += "'"
            column = vtk.vtkDoubleArray()
            column.SetName(columnName)
            column.InsertNextValue(float(probability))
            table.AddColumn(column)
            columnNames.append(columnName)
        return columnNames

    @staticmethod
    def _check(result: ClassificationResult, probabilities: np.ndarray) -> None:
        if len(result.class_names) != probabilities.size or probabilities.size == 0:
            raise ModelError(f"model '{result.model}' returned {len(result.class_names)} class names but "
                             f"{probabilities.size} probabilities; they must match one to one.")
        if not np.all(np.isfinite(probabilities)) or probabilities.min() < 0 or probabilities.max() > 1:
            raise ModelError(f"model '{result.model}' returned probabilities outside 0..1: {probabilities.tolist()}")
