"""Reacts to the scene closing: the logic drops its jobs, the panel lets go of its parameter node.

MRML scene observers are called with the event *id*, and PythonQt/VTK pass the observer a name of
"NoEvent" for scene events, so one callback that compares the event's name cannot tell the start
of a close from its end. One observer per event removes the question.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional


class SceneCloseGuard:
    """Observes `scene`'s StartCloseEvent / EndCloseEvent with one callback each.

    On start: `onStartClose()` (the logic drops every job, whose input is about to go; the panel
    lets go of its parameter node); on end: `onEndClose()` (the panel re-creates its parameter node).
    A failing callback is logged: the scene closes whatever happens.

    Example (what the panel does):
        >>> guard = SceneCloseGuard(slicer.mrmlScene, panel.forgetParameterNode, panel.initializeParameterNode)
        >>> guard.close()   # in cleanup
    """

    def __init__(self, scene, onStartClose: Optional[Callable[[], object]] = None,
                 onEndClose: Optional[Callable[[], object]] = None) -> None:
        self.scene = scene
        self._onStartClose = onStartClose
        self._onEndClose = onEndClose
        self._tags = [scene.AddObserver(scene.StartCloseEvent, self._startClose),
                      scene.AddObserver(scene.EndCloseEvent, self._endClose)]

    def close(self) -> None:
        """Stop observing (the panel's cleanup, the logic's close)."""
        for tag in self._tags:
            self.scene.RemoveObserver(tag)
        self._tags = []

    def _startClose(self, caller=None, event=None) -> None:
        self._call(self._onStartClose, "start")

    def _endClose(self, caller=None, event=None) -> None:
        self._call(self._onEndClose, "end")

    @staticmethod
    def _call(callback, when: str) -> None:
        if callback is None:
            return
        try:
            callback()
        except Exception:  # an exception escaping into VTK's observer call would be lost anyway
            logging.exception("NNMambaSlicer: reacting to the %s of a scene close failed", when)
