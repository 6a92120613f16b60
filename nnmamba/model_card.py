"""Model cards: what a shipped or imported model is, read from JSON without torch.

A model is a folder `<name>/` holding its card `model.json` and its weights `weights.safetensors`
(the card's `weights` field names the file; loose `<name>.json` cards beside their weights are
found too, for hand-made or imported models). The Slicer panel
lists models from cards, so this module imports neither torch nor SimpleITK. The schema is
`nnmamba/model_card.schema.json`; `validate_card_dict` checks the same rules by hand (so that
users need no jsonschema) and words each failure for a person.

Axis order: `spacing_mm` and `patch_size` are (i, j, k) = (x, y, z) of the working grid, which is
aligned with the patient axes named by `orientation` ("LPS": i to the left, j posterior, k superior).

Discovery order: `$NNMAMBA_MODELS_DIR` (os.pathsep-separated folders), then `models/` beside the
`nnmamba` package (a source checkout or the Slicer extension's root).

Example:
    >>> card = default_model("segmentation")          # doctest: +SKIP
    >>> card.name, card.network, card.spacing_mm       # doctest: +SKIP
    ('brain-structures-seg', 'nnMambaSeg', (3.0, 3.0, 3.0))
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from nnmamba.errors import InputError, ModelError
from nnmamba import tasks
from nnmamba.landmark_settings import LandmarkDecoding, LandmarkFitSettings, LandmarkRegistration
from nnmamba.mirroring import swap_order

CARD_SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("model_card.schema.json")
ORIENTATIONS = ("LPS", "RAS")
NORMALIZATIONS = ("percentile", "zscore", "ct")
HEATMAP_ACTIVATIONS = ("none", "sigmoid")
PATCH_MULTIPLE = 16
# What a card may say of its model's quality, and how that is shown to people. No level claims
# clinical fitness: every output of this software is for research only.
QUALITIES = {
    "unvalidated": "unvalidated: its accuracy on real scans has not been shown to be useful",
    "research": "research: measured on held-out real scans, for research use",
}
DEFAULT_QUALITY = "unvalidated"   # a card that does not say is not assumed to be any better
NOT_FOR_CLINICAL_USE = "Research software: not for clinical use."
CARD_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    modality: str  # "MR", "CT" or "any"


@dataclass(frozen=True)
class LandmarkSpec:
    name: str
    description: str


@dataclass(frozen=True)
class ClassSpec:
    name: str
    description: str


@dataclass
class ModelCard:
    """One model: network, preprocessing policy, output vocabulary and provenance."""

    name: str
    task: str
    network: str
    hyperparameters: dict
    weights: str                      # file name, relative to the card's folder
    channels: list                    # list[ChannelSpec], in the order the network expects
    spacing_mm: tuple                 # (i, j, k)
    orientation: str
    normalization: dict
    patch_size: tuple                 # (i, j, k), multiples of 16
    trained: bool
    description: str = ""
    quality: str = DEFAULT_QUALITY    # a key of QUALITIES
    mirror_axes: tuple = ()           # working-grid axes (0=i, 1=j, 2=k) safe to mirror for TTA
    mirror_pairs: tuple = ()          # output channels that trade places under a left-right (i) mirror
    mirror_always: bool = False       # the model's answer is the mean over its mirrors, TTA or not
    heatmap_activation: str = "none"
    landmark_decoding: LandmarkDecoding = LandmarkDecoding()    # landmarks: score maps -> points
    landmark_fit: Optional[LandmarkFitSettings] = None          # landmarks: template fit, if declared
    landmark_registration: Optional[LandmarkRegistration] = None    # landmarks: template head registered
    labels: list = field(default_factory=list)      # list[SegmentInfo], background excluded
    landmarks: list = field(default_factory=list)   # list[LandmarkSpec]
    classes: list = field(default_factory=list)     # list[ClassSpec]
    training: Optional[dict] = None
    accuracy: Optional[dict] = None
    provenance: Optional[dict] = None
    path: Optional[Path] = None       # where the card was read from (None for in-memory cards)
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def weights_path(self) -> Path:
        base = self.path.parent if self.path is not None else Path.cwd()
        return base / self.weights

    def mirror_order(self, outputs: int) -> Optional[list]:
        """The output channel order after a left-right mirror (None when no channel moves)."""
        return swap_order(outputs, self.mirror_pairs) if self.mirror_pairs else None

    @property
    def in_channels(self) -> int:
        return len(self.channels)

    @property
    def output_names(self) -> list:
        return tasks.get_task(self.task).output_names(self)

    @property
    def quality_note(self) -> str:
        """The quality in words with the disclaimer, e.g. for a result's description."""
        return f"Model quality {QUALITIES[self.quality]}. {NOT_FOR_CLINICAL_USE}"

    def summary(self) -> str:
        state = (f"trained, {self.quality}" if self.trained else "UNTRAINED (random weights)")
        spacing = "x".join(f"{s:g}" for s in self.spacing_mm)
        return (f"{self.name}: {self.task}, {self.network}, {len(self.output_names)} outputs, "
                f"{spacing} mm, {state}")

    def to_dict(self) -> dict:
        return dict(self.raw)


# ---- validation ---------------------------------------------------------------------------------

def _fail(where: str, message: str) -> ModelError:
    return ModelError(f"model card {where}: {message}")


def _require(d: dict, key: str, kind, where: str):
    if key not in d:
        raise _fail(where, f"missing required field '{key}'")
    value = d[key]
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise _fail(where, f"field '{key}' must be {name}, got {type(value).__name__} {value!r}")
    return value


def _triple(d: dict, key: str, where: str, positive: bool = True) -> tuple:
    value = _require(d, key, list, where)
    if len(value) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise _fail(where, f"'{key}' must be three numbers (i, j, k), got {value!r}")
    if positive and not all(v > 0 for v in value):
        raise _fail(where, f"'{key}' must be positive, got {value!r}")
    return tuple(value)


def networks_of_tasks() -> dict:
    """network name (nnmamba.networks.build_network) -> the task its output serves (the first that lists it)."""
    served = {}
    for name in tasks.task_names():
        for network in tasks.get_task(name).networks:
            served.setdefault(network, name)
    return served


def validate_card_dict(d: dict, where: str = "<memory>") -> ModelCard:
    """Check a parsed card and build the `ModelCard`; raises `ModelError` naming the field."""
    if not isinstance(d, dict):
        raise _fail(where, f"must be a JSON object, got {type(d).__name__}")
    version = _require(d, "schema_version", int, where)
    if version != CARD_SCHEMA_VERSION:
        raise _fail(where, f"schema_version {version} is not supported (this nnmamba reads "
                           f"{CARD_SCHEMA_VERSION}); upgrade nnmamba or re-export the card")
    name = _require(d, "name", str, where)
    if not name or any(c in name for c in "/\\ ") or name.startswith("."):
        raise _fail(where, f"'name' must be a non-empty file-name-safe string, got {name!r}")
    task = _require(d, "task", str, where)
    if task not in tasks.task_names():
        raise _fail(where, f"'task' must be one of {tasks.task_names()}, got {task!r}")
    definition = tasks.get_task(task)
    network = _require(d, "network", str, where)
    if network not in definition.networks:
        served = networks_of_tasks()
        if network not in served:
            raise _fail(where, f"'network' must be one of {sorted(served)}, got {network!r}")
        raise _fail(where, f"network {network} does {served[network]}, but the card's task is {task}")
    hyper = _require(d, "hyperparameters", dict, where)
    weights = _require(d, "weights", str, where)
    trained = _require(d, "trained", bool, where)
    quality = d.get("quality", DEFAULT_QUALITY)
    if quality not in QUALITIES:
        raise _fail(where, f"'quality' must be one of {list(QUALITIES)}, got {quality!r}")

    inp = _require(d, "input", dict, where)
    raw_channels = _require(inp, "channels", list, where + " input")
    if not raw_channels:
        raise _fail(where, "input.channels must list at least one channel")
    channels = []
    for ch in raw_channels:
        if not isinstance(ch, dict) or not isinstance(ch.get("name"), str):
            raise _fail(where, f"each input channel needs a 'name', got {ch!r}")
        channels.append(ChannelSpec(ch["name"], str(ch.get("modality", "any"))))
    spacing = _triple(inp, "spacing_mm", where + " input")
    if not all(0.05 <= s <= 20 for s in spacing):
        raise _fail(where, f"input.spacing_mm must be within 0.05..20 mm, got {list(spacing)}")
    patch = _triple(inp, "patch_size", where + " input")
    if not all(isinstance(p, int) and p % PATCH_MULTIPLE == 0 for p in patch):
        raise _fail(where, f"input.patch_size must be integers divisible by {PATCH_MULTIPLE}, "
                           f"got {list(patch)}")
    orientation = inp.get("orientation", "LPS")
    if orientation not in ORIENTATIONS:
        raise _fail(where, f"input.orientation must be one of {list(ORIENTATIONS)}, got {orientation!r}")
    norm = _require(inp, "normalization", dict, where + " input")
    method = norm.get("method")
    if method not in NORMALIZATIONS:
        raise _fail(where, f"input.normalization.method must be one of {list(NORMALIZATIONS)}, "
                           f"got {method!r}")
    if method == "ct":
        for key in ("clip", "mean", "std"):
            if key not in norm:
                raise _fail(where, f"normalization 'ct' needs '{key}' (clip [lo, hi], dataset mean, std)")
        if float(norm["std"]) <= 0:
            raise _fail(where, f"normalization std must be > 0, got {norm['std']}")
    elif method == "percentile":
        lower, upper = norm.get("lower", 0.5), norm.get("upper", 99.5)
        if not (isinstance(lower, (int, float)) and isinstance(upper, (int, float)) and 0 <= lower < upper <= 100):
            raise _fail(where, f"normalization 'percentile' needs 0 <= lower < upper <= 100, got {lower!r}, {upper!r}")
    elif norm.get("mask", "nonzero") not in ("nonzero", "all"):
        raise _fail(where, f"normalization 'zscore' mask must be 'nonzero' or 'all', got {norm.get('mask')!r}")

    inference = d.get("inference", {}) or {}
    mirror_axes = tuple(inference.get("mirror_axes", (0, 1, 2)))
    if not all(a in (0, 1, 2) for a in mirror_axes):
        raise _fail(where, f"inference.mirror_axes must be a subset of [0, 1, 2], got {list(mirror_axes)}")
    mirror_pairs = _mirror_pairs(inference.get("mirror_pairs", []), where)
    mirror_always = inference.get("mirror_always", False)
    if not isinstance(mirror_always, bool) or (mirror_always and not mirror_axes):
        raise _fail(where, f"inference.mirror_always must be true or false, and true needs mirror_axes; got "
                           f"{mirror_always!r} with mirror_axes {list(mirror_axes)}")
    activation = inference.get("heatmap_activation", "none")
    if activation not in HEATMAP_ACTIVATIONS:
        raise _fail(where, f"inference.heatmap_activation must be one of {list(HEATMAP_ACTIVATIONS)}, "
                           f"got {activation!r}")

    in_ch = hyper.get("in_ch")
    if in_ch != len(channels):
        raise _fail(where, f"hyperparameters.in_ch is {in_ch!r} but input.channels lists {len(channels)}")

    vocabulary = {"labels": [], "landmarks": [], "classes": []}
    vocabulary.update(definition.card_fields(d, hyper, lambda card, key, kind: _require(card, key, kind, where),
                                             lambda message: _fail(where, message)))

    card = ModelCard(
        name=name, task=task, network=network, hyperparameters=dict(hyper), weights=weights,
        channels=channels, spacing_mm=tuple(float(s) for s in spacing), orientation=orientation,
        normalization=dict(norm), patch_size=tuple(int(p) for p in patch), trained=trained,
        description=str(d.get("description", "")), quality=quality, mirror_axes=mirror_axes,
        mirror_pairs=mirror_pairs, mirror_always=mirror_always, heatmap_activation=activation, **vocabulary,
        training=d.get("training"), accuracy=d.get("accuracy"), provenance=d.get("provenance"),
        raw=d)
    outputs = tasks.get_task(task).out_channels(card) if mirror_pairs else 0
    if any(c >= outputs for pair in mirror_pairs for c in pair):
        raise _fail(where, f"inference.mirror_pairs name output channel(s) beyond the model's {outputs}: "
                           f"{[list(p) for p in mirror_pairs]}")
    return card


def _mirror_pairs(pairs, where: str) -> tuple:
    """inference.mirror_pairs: [[a, b], ...] output channels (a segmentation's label values, a landmark
    model's point indices) that trade places when the input is mirrored left-right (axis i: both
    ORIENTATIONS start with L or R), as in training that mirrors a head and swaps Left/Right names."""
    if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0
                                                        for c in p) and p[0] != p[1] for p in pairs):
        raise _fail(where, f"inference.mirror_pairs must be a list of [a, b] pairs of distinct output channel "
                           f"indices >= 0, got {pairs!r}")
    flat = [c for p in pairs for c in p]
    if len(set(flat)) != len(flat):
        raise _fail(where, f"inference.mirror_pairs names a channel twice: {pairs!r}")
    return tuple(tuple(p) for p in pairs)


def read_card(path) -> ModelCard:
    """Read and validate one card file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"model card {path} does not exist") from None
    except UnicodeDecodeError as e:
        raise ModelError(f"model card {path} is not UTF-8 text (byte {e.start}); save it as UTF-8 JSON") from e
    except OSError as e:
        raise ModelError(f"model card {path} could not be read: {e}") from e
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ModelError(f"model card {path} is not valid JSON (line {e.lineno}, column {e.colno}: "
                         f"{e.msg}); fix the file or move it out of the models folder") from e
    except RecursionError as e:
        raise ModelError(f"model card {path} nests too deeply to be a model card") from e
    card = validate_card_dict(d, where=str(path))
    card.path = path.resolve()
    return card


# ---- discovery ----------------------------------------------------------------------------------

def models_dirs(extra_dirs: Sequence = ()) -> list:
    """Folders searched for cards, in priority order (existing ones only); `extra_dirs` come first
    (a folder chosen in the Slicer panel, which must not change the process's environment)."""
    dirs = [Path(p) for p in extra_dirs]
    env = os.environ.get("NNMAMBA_MODELS_DIR")
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs.append(Path(__file__).resolve().parent.parent / "models")
    seen, found = set(), []
    for d in dirs:
        r = d.resolve()
        if r.is_dir() and r not in seen:
            seen.add(r)
            found.append(r)
    return found


def card_path(models_dir, name: str) -> Path:
    """Where the card of model `name` lives in a models folder: `<models_dir>/<name>/model.json`."""
    return Path(models_dir) / name / CARD_FILE


def _is_card(path: Path) -> bool:
    """Whether `path` is meant as a model card (then `read_card` must accept it or raise).

    A `model.json` always is. A loose `*.json` is when it parses to an object declaring
    `schema_version` and `network`, or, when it does not parse, when its text mentions
    `schema_version`: a card with a syntax error must raise naming its line, not vanish from the
    list (other JSON files beside the cards are skipped)."""
    if path.name == CARD_FILE:
        return True
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    try:
        d = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return '"schema_version"' in text
    return isinstance(d, dict) and "schema_version" in d and "network" in d


def list_models(extra_dirs: Sequence = ()) -> list:
    """All cards found, first folder wins on duplicate names; invalid cards raise `ModelError`."""
    cards, names = [], set()
    for folder in models_dirs(extra_dirs):
        for path in sorted([*folder.glob(f"*/{CARD_FILE}"), *folder.glob("*.json")]):
            if not _is_card(path):
                continue
            card = read_card(path)
            if card.name not in names:
                names.add(card.name)
                cards.append(card)
    return cards


def find_model(name_or_path) -> ModelCard:
    """A card by name (from `list_models`) or by the path of a card JSON (or its folder)."""
    if isinstance(name_or_path, ModelCard):
        return name_or_path
    text = str(name_or_path)
    path = Path(text)
    if text.endswith(".json") or path.is_file():
        return read_card(path)
    if (path / CARD_FILE).is_file():
        return read_card(path / CARD_FILE)
    if path.is_dir():
        cards = [p for p in sorted(path.glob("*.json")) if _is_card(p)]
        if len(cards) != 1:
            raise ModelError(f"folder {path} holds {len(cards)} model cards; give the card's .json path")
        return read_card(cards[0])
    cards = list_models()
    for card in cards:
        if card.name == text:
            return card
    known = ", ".join(c.name for c in cards) or "none"
    raise ModelError(f"no model named {text!r}; known models: {known} "
                     f"(searched {', '.join(str(d) for d in models_dirs()) or 'no folders'}; "
                     f"set NNMAMBA_MODELS_DIR or give a card's path)")


def default_model(task) -> ModelCard:
    """The first card for `task` (shipped cards sort first by name within a folder)."""
    task = getattr(task, "value", task)   # a nnmamba.results.Task member or its name
    if task not in tasks.task_names():
        raise InputError(f"unknown task {task!r}; expected one of {tasks.task_names()}")
    for card in list_models():
        if card.task == task:
            return card
    raise ModelError(f"no model card for task {task!r} found in "
                     f"{', '.join(str(d) for d in models_dirs()) or 'no folders'}; "
                     f"set NNMAMBA_MODELS_DIR to a folder with cards")
