"""Reacts to the scene closing: running jobs are cancelled, the panel lets go of its parameter node.

MRML scene observers are called with the event *id*, and PythonQt/VTK pass the observer a name of
"NoEvent" for scene events, so one callback that compares the event's name cannot tell the start
of a close from its end. One observer per event removes the question.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional


class SceneCloseGuard:
    """Observes `scene`'s StartCloseEvent / EndCloseEvent with one callback each.

    On start: `cancelJobs()` (the logic's `cancel`) stops every running job, whose input is about to
    go, then `onStartClose()`; on end: `onEndClose()` (the panel re-creates its parameter node).

    Example (what the panel does):
        >>> guard = SceneCloseGuard(slicer.mrmlScene, logic.cancel, panel.forgetParameterNode,
        ...                         panel.initializeParameterNode)
        >>> guard.close()   # in cleanup
    """

    def __init__(self, scene, cancelJobs: Callable[[], None], onStartClose: Optional[Callable[[], None]] = None,
                 onEndClose: Optional[Callable[[], None]] = None) -> None:
        self.scene = scene
        self._cancelJobs = cancelJobs
        self._onStartClose = onStartClose
        self._onEndClose = onEndClose
        self._tags = [scene.AddObserver(scene.StartCloseEvent, self._startClose),
                      scene.AddObserver(scene.EndCloseEvent, self._endClose)]

    def close(self) -> None:
        """Stop observing (the panel's cleanup)."""
        for tag in self._tags:
            self.scene.RemoveObserver(tag)
        self._tags = []

    def _startClose(self, caller=None, event=None) -> None:
        try:
            self._cancelJobs()
        except Exception:  # the scene closes whatever happens; the worker restarts on the next job
            logging.exception("NNMambaSlicer: cancelling the running jobs on scene close failed")
        if self._onStartClose is not None:
            self._onStartClose()

    def _endClose(self, caller=None, event=None) -> None:
        if self._onEndClose is not None:
            self._onEndClose()
