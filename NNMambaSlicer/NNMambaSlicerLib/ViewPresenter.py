"""Shows new outputs in Slicer's views: input behind, segments in 2D and 3D, the chart in the layout.

GUI-only (needs `slicer.app`); the MRML logic emits `outputsAdded` and this is connected to it in
Slicer, so scripts and tests on plain MRML never depend on it.
"""

from __future__ import annotations

import logging


class ViewPresenter:
    """Brings a job's outputs into view without touching any other node.

    Example:
        >>> logic.outputsAdded.connect(ViewPresenter().show)
    """

    def show(self, sourceVolumeNode, outputs: dict) -> None:
        import slicer

        try:
            slicer.util.setSliceViewerLayers(background=sourceVolumeNode, fit=True)
            for node in [n for n in outputs.get("segmentation", []) if n.IsA("vtkMRMLSegmentationNode")]:
                display = node.GetDisplayNode()
                display.SetVisibility(True)
                display.SetVisibility2DFill(True)
                display.SetVisibility3D(True)
            for node in outputs.get("landmarks", []):
                node.GetDisplayNode().SetVisibility(True)
            charts = [n for n in outputs.get("classification", []) if n.IsA("vtkMRMLPlotChartNode")]
            if charts:
                slicer.modules.plots.logic().ShowChartInLayout(charts[0])
            if "segmentation" in outputs:
                slicer.util.resetThreeDViews()
        except Exception as error:  # showing is a convenience: the nodes are in the scene either way
            logging.warning("NNMambaSlicer: could not bring the results into view: %s", error)
