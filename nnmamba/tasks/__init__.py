"""The tasks the engine runs, one file each, found by name: `get_task("landmarks")`.

Every per-task decision (card fields, output channels, decoding, files, wire encoding, training
problem, evaluation) is a method of the task's `TaskDefinition` (`nnmamba.tasks.base`); the model
card, the predictor, the writers, the worker protocol, predict/cohort, training and evaluation look
the task up here. The shipped tasks are listed in `BUILTIN` (name -> module, whose `TASK` is the
definition) and imported on first look-up, like optional scan backends: the model card, below
them, validates a card through its task without importing the task files, which call up into
inference, io, train and evaluate inside their methods.

Adding a task: a file `nnmamba/tasks/<name>.py` with a `TaskDefinition` subclass and `TASK = ...`,
listed in `BUILTIN` (a shipped task) or registered with `register(MyTask())` (a plugin, a test);
plus its result builder in the Slicer module (`NNMambaSlicerLib`), keyed by the same name.

Example:
    >>> from nnmamba.tasks import get_task, task_names
    >>> task_names()
    ['segmentation', 'landmarks', 'classification']
    >>> get_task("segmentation").suffixes
    ('.seg.nrrd',)
"""

from __future__ import annotations

import importlib
from typing import Dict, List

from nnmamba.errors import InputError
from nnmamba.tasks.base import TaskDefinition

# name -> module defining TASK; the order is the order tasks are listed and run in
BUILTIN = {"segmentation": "nnmamba.tasks.segmentation",
           "landmarks": "nnmamba.tasks.landmarks",
           "classification": "nnmamba.tasks.classification"}

_REGISTRY: Dict[str, TaskDefinition] = {}


def _load_builtin() -> None:
    for name, module in BUILTIN.items():
        if name not in _REGISTRY:
            _REGISTRY[name] = importlib.import_module(module).TASK


def register(task: TaskDefinition) -> TaskDefinition:
    """Make `task` known under `task.name` (ValueError if that name is taken by another task)."""
    if not isinstance(task, TaskDefinition) or not task.name:
        raise ValueError(f"register takes a TaskDefinition with a name, got {task!r}")
    _load_builtin()
    if task.name in _REGISTRY and _REGISTRY[task.name] is not task:
        raise ValueError(f"a task named {task.name!r} is already registered")
    _REGISTRY[task.name] = task
    return task


def unregister(name: str) -> None:
    """Forget the task registered as `name` (a shipped task comes back on the next look-up)."""
    _REGISTRY.pop(name, None)


def task_names() -> List[str]:
    """Every known task: the shipped ones first, then those registered."""
    _load_builtin()
    return list(_REGISTRY)


def get_task(name: str) -> TaskDefinition:
    """The task registered as `name`; InputError naming the known tasks if there is none."""
    _load_builtin()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise InputError(f"unknown task {name!r}; choose from {', '.join(_REGISTRY)}") from None


__all__ = ["BUILTIN", "TaskDefinition", "get_task", "register", "task_names", "unregister"]
