"""`TaskDefinition`: what one task (segmentation, landmarks, classification, ...) owns, in one place.

A task is one object answering every per-task question the engine asks, so the predictor, the
writers, the worker protocol, predict/cohort, training and evaluation hold no `if task == ...`:

- the card: which fields a card of this task must carry (`card_fields`), its output names and the
  network's output channels (`output_names`, `out_channels`);
- inference: whether the network answers per voxel (sliding window over the volume) or once for the
  whole volume (`spatial_output`), how its output becomes a result (`decode`), and a few plain lines
  about a result (`describe`);
- files: the suffixes of what a result is written to and the writing itself (`suffixes`, `write`);
- the wire: the result as a JSON header + named arrays for the worker protocol and back
  (`encode`, `decode_wire`);
- training: the problem that makes batches and losses (`make_problem`);
- evaluation: the model's answer in a result, the ground truth, the score of one answer, the
  summary of many, the baseline, the headline figure (`answer`, `truth`, `score`, `summarise`,
  `baseline`, `headline`).

The bodies live where their layer is (decoding helpers in `nnmamba.inference`, writers in
`nnmamba.io`, problems in `nnmamba.train.problems`, metrics in `nnmamba.evaluate`); a task file
calls them, importing them inside its methods, so `nnmamba.tasks` imports without torch (the worker
client and Slicer use the wire part). A new task is one file with a subclass and one
`nnmamba.tasks.register(...)` line (or an entry in `nnmamba.tasks.BUILTIN` for a shipped one).

Example:
    >>> from nnmamba.tasks import get_task
    >>> get_task("classification").suffixes
    ('.probabilities.json', '.probabilities.tsv')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from nnmamba.volume import Geometry

Fail = Callable[[str], Exception]
Require = Callable[[dict, str, type], Any]


class TaskDefinition:
    """One task behind the engine's small interface; see the module docstring. Subclass, then register."""

    name: str = ""
    result_type: type = object
    suffixes: Tuple[str, ...] = ()
    # the networks (nnmamba.networks names) whose output this task reads
    networks: Tuple[str, ...] = ()
    # True: the network maps a patch to per-voxel channels, run by sliding window over the whole
    # volume; False: it maps the centred patch to one vector of `out_channels` scores
    spatial_output: bool = True

    # ---- the card ----------------------------------------------------------------------------

    def card_fields(self, card: dict, hyperparameters: dict, require: Require, fail: Fail) -> Dict[str, list]:
        """This task's vocabulary read from a card dict -> ModelCard fields ("labels", "landmarks",
        "classes"); `require(card, key, type)` reads a field that must be there, `raise fail(message)`
        for what is wrong."""
        raise NotImplementedError

    def output_names(self, card) -> List[str]:
        """The names of the card's outputs (segments, landmarks, classes)."""
        raise NotImplementedError

    def out_channels(self, card) -> int:
        """How many channels the network puts out for this card."""
        raise NotImplementedError

    # ---- inference ---------------------------------------------------------------------------

    def decode(self, card, output, working_geometry: Geometry, volume) -> Any:
        """Network output -> this task's result on the input volume's grid.

        output: (out_channels, Z, Y, X) on the working grid when `spatial_output`, else
        (1, out_channels) scores. `model` and `timings` of the result are filled by the predictor.
        """
        raise NotImplementedError

    def describe(self, result) -> List[str]:
        """A few plain lines about one result (what `nnmamba demo` prints)."""
        return []

    # ---- files -------------------------------------------------------------------------------

    def write(self, result, base: Path) -> List[Path]:
        """Write `result` to f"{base}{suffix}" for each of `suffixes` (atomically); the paths written."""
        raise NotImplementedError

    # ---- the worker protocol -----------------------------------------------------------------

    def encode(self, result) -> Tuple[dict, Dict[str, np.ndarray]]:
        """(JSON-able header fields, name -> array) carrying `result` over the wire."""
        raise NotImplementedError

    def decode_wire(self, header: dict, arrays: Dict[str, np.ndarray], model: str, timings: dict,
                    read_geometry: Callable[[Any], Geometry]) -> Any:
        """The result back from `encode`'s fields and arrays; `read_geometry` turns a header's geometry
        entry into a checked `Geometry`. A missing entry raises KeyError (the protocol words it)."""
        raise NotImplementedError

    # ---- training ----------------------------------------------------------------------------

    def make_problem(self, card: dict, cases, device, seed: int, sigma_mm: float, recipe, label_maps):
        """The training problem (batches, loss, validation) of `nnmamba.train.problems` for this task."""
        raise NotImplementedError(f"task {self.name!r} cannot be trained")

    # ---- evaluation --------------------------------------------------------------------------

    def answer(self, result) -> Any:
        """What evaluation scores in a result (labels, points, probabilities)."""
        raise NotImplementedError

    def truth(self, case, card, manifest: dict) -> Any:
        """The ground truth of a prepared case in the card's terms."""
        raise NotImplementedError(f"task {self.name!r} cannot be evaluated")

    def score(self, answer, truth, case, card, manifest: dict) -> dict:
        """Figures of one answer against its truth."""
        raise NotImplementedError(f"task {self.name!r} cannot be evaluated")

    def summarise(self, scores: list, rows: list, card) -> dict:
        """Figures of many scored answers."""
        raise NotImplementedError(f"task {self.name!r} cannot be evaluated")

    # (key of a summary's per-case figures, what that figure is called) for the printed report
    per_case_figure: Tuple[str, str] = ("", "")

    def headline(self, summary: dict) -> str:
        """The one figure a summary table shows."""
        raise NotImplementedError(f"task {self.name!r} cannot be evaluated")

    def baseline(self, card, data_dir, manifest: dict, atlas: str, template: str):
        """The trivial answer evaluation compares the model with: an object with `description` and
        `answer(case)`."""
        raise NotImplementedError(f"task {self.name!r} has no evaluation baseline")

    def check_manifest(self, manifest: dict) -> None:
        """ValueError when a prepared-data manifest lacks what evaluating this task needs."""

    def report_extras(self, card, manifest: dict, heldout: list, rows: list) -> dict:
        """Entries this task adds to an evaluation report."""
        return {}
