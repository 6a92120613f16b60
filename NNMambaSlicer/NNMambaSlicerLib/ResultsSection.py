"""The panel's Results section: what the last job gave, in words, the structures' volumes (mL) and
the class probability table.

GUI-only (qt). The nodes themselves are in the scene; this only summarises them beside the buttons.
"""

from __future__ import annotations

import qt

from nnmamba.metrics import segment_volumes

HIGHLIGHT = (255, 236, 179)  # the most likely class's row


class ResultsSection:
    """Example (the panel, when a job ended well):
        >>> ResultsSection(ui).show(outcome)
    """

    def __init__(self, ui) -> None:
        self.ui = ui

    def show(self, outcome) -> None:
        self.ui.timingsLabel.text = outcome.timingSummary()
        result = outcome.results.get("classification")
        table = self.ui.probabilityTableWidget
        volumes = self._volumesHtml(outcome.results.get("segmentation"))
        if result is None:
            self.ui.resultsSummaryLabel.text = outcome.message + volumes
            table.setRowCount(0)
            return
        top = int(max(range(len(result.class_names)), key=lambda i: result.probabilities[i]))
        self.ui.resultsSummaryLabel.text = (f"Most likely class: <b>{result.class_names[top]}</b> "
                                            f"({float(result.probabilities[top]):.1%}). {outcome.message}{volumes}")
        table.setRowCount(len(result.class_names))
        for row, (name, probability) in enumerate(zip(result.class_names, result.probabilities)):
            for column, text in enumerate((str(name), f"{float(probability):.3f}")):
                item = qt.QTableWidgetItem(text)
                if row == top:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                    item.setBackground(qt.QColor(*HIGHLIGHT))
                table.setItem(row, column, item)
        table.resizeColumnsToContents()

    @staticmethod
    def _volumesHtml(segmentation) -> str:
        """The structures' volumes as a small table (the same figures as the '... volumes' table node)."""
        if segmentation is None:
            return ""
        rows = segment_volumes(segmentation.labelmap, segmentation.geometry.spacing, segmentation.segments)
        cells = "".join(f"<tr><td>{name}</td><td align='right'>{millilitres:.1f} mL</td></tr>"
                        for _, name, _, millilitres in rows)
        return f"<table>{cells}</table>"

    def clear(self) -> None:
        self.ui.timingsLabel.text = ""
