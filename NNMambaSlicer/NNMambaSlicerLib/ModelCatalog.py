"""The models the panel offers: those of the worker that will run them, or the local cards before one exists.

A remote server's models are what it has on its disk, not what this computer has, so once a
worker is reachable its list-models answer is the catalogue; the local cards (the extension's
`models/` folder and a folder chosen in the panel) are only the first guess, and the catalogue
says which of the two it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence

TASKS = ("segmentation", "landmarks", "classification")
UNKNOWN_QUALITY = "unvalidated"  # a worker too old to say is not assumed to offer better


@dataclass(frozen=True)
class ModelEntry:
    """One model as the panel shows it (the worker's list-models summary, or a local card)."""

    name: str
    task: str
    description: str = ""
    trained: bool = True
    channels: tuple = ("image",)
    summary: str = ""
    quality: str = UNKNOWN_QUALITY    # the card's `quality` (nnmamba.model_card.QUALITIES)

    @property
    def trustNote(self) -> str:
        """How far to trust the model, in words beside its description in the panel."""
        if not self.trained:
            return "Untrained weights: the output is not meaningful."
        if self.quality == "unvalidated":
            return "Unvalidated: its accuracy on real scans has not been shown; check every result."
        return f"Quality: {self.quality}. Not for clinical use."

    @property
    def label(self) -> str:
        """The name with what the user must know before trusting it: "seg (unvalidated)"."""
        return f"{self.name} ({self.quality if self.trained else 'untrained'})"

    @classmethod
    def fromSummary(cls, summary: dict) -> "ModelEntry":
        """From one item of the worker's list-models reply (`nnmamba.worker.engine.model_summaries`)."""
        try:
            return cls(name=str(summary["name"]), task=str(summary["task"]),
                       description=str(summary.get("description") or ""), trained=bool(summary.get("trained", True)),
                       channels=tuple(str(c) for c in summary.get("channels") or ("image",)),
                       summary=str(summary.get("summary") or ""),
                       quality=str(summary.get("quality") or UNKNOWN_QUALITY))
        except (KeyError, TypeError) as error:
            raise ValueError(f"a model summary needs at least 'name' and 'task', got {summary!r:.200}") from error

    @classmethod
    def fromCard(cls, card) -> "ModelEntry":
        return cls(name=card.name, task=card.task, description=card.description or "", trained=card.trained,
                   channels=tuple(c.name for c in card.channels), summary=card.summary(), quality=card.quality)


@dataclass
class ModelCatalog:
    """Models by task plus where the list came from (`source`, in words for the panel).

    Example:
        >>> catalog = ModelCatalog.fromDisk([chosenFolder])       # before a worker exists
        >>> catalog = ModelCatalog.fromWorker(client, "the worker at gpu-server:8765")
        >>> [m.name for m in catalog.forTask("segmentation")]
        ['brain-structures-seg']
    """

    entries: list
    source: str
    fromWorkerList: bool = False
    problems: list = field(default_factory=list)  # cards that could not be read (shown, not fatal)

    @classmethod
    def fromDisk(cls, extraFolders: Sequence = ()) -> "ModelCatalog":
        """The cards on this computer: `extraFolders` first, then the extension's models folder."""
        from nnmamba import model_card
        from nnmamba.errors import ModelError

        folders = [str(f) for f in extraFolders if f]
        where = ", ".join(str(d) for d in model_card.models_dirs(folders)) or "no models folder"
        try:
            entries = [ModelEntry.fromCard(card) for card in model_card.list_models(folders)]
            problems = []
        except ModelError as error:  # one broken card must not hide the panel; say which
            logging.warning("NNMambaSlicer: reading the model cards failed: %s", error)
            entries, problems = [], [str(error)]
        return cls(entries, f"model cards on this computer ({where}); the worker's own list replaces them once "
                            "it runs", False, problems)

    @classmethod
    def fromWorker(cls, client, where: str, timeout: float = 30.0) -> "ModelCatalog":
        """The worker's list-models answer (blocks up to `timeout` s: call it off the GUI thread)."""
        entries = [ModelEntry.fromSummary(summary) for summary in client.list_models(timeout=timeout)]
        return cls(entries, f"models of {where}", True)

    def qualities(self) -> dict:
        """model name -> its card's quality, for the result nodes' descriptions."""
        return {entry.name: entry.quality for entry in self.entries}

    def forTask(self, task: str) -> list:
        return [entry for entry in self.entries if entry.task == task]

    def find(self, task: str, name: str) -> Optional[ModelEntry]:
        """The entry named `name` (the task's first when `name` is empty), or None."""
        models = self.forTask(task)
        if not name:
            return models[0] if models else None
        return next((entry for entry in models if entry.name == name), None)

    def whyCannotRun(self, task: str, name: str) -> Optional[str]:
        """None when `task` has the model; else what is missing, in words for Apply's tooltip."""
        if self.find(task, name) is not None:
            return None
        if not self.forTask(task):
            return f"No {task} model is available ({self.source})."
        return f"The {task} model '{name}' is not among the {self.source}; choose another."
