"""A model's weights: build its card's network, load and save its safetensors.

Cards themselves (reading, finding, validating; torch-free) are `nnmamba.model_card`'s: one way in
for each. Importing this module does not import torch; `load_model` and `save_model` do.

Example:
    >>> from nnmamba.model_card import default_model
    >>> from nnmamba.models import load_model
    >>> card = default_model("segmentation")                  # doctest: +SKIP
    >>> net = load_model(card, "cpu")                          # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

from nnmamba.errors import ModelError
from nnmamba.model_card import CARD_FILE, WEIGHTS_FILE, ModelCard, read_card, validate_card_dict


def sha256_of(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_for_card(card: ModelCard, scan_backend: str = "auto"):
    """The card's network with random weights (torch.nn.Module, train mode)."""
    from nnmamba.networks import build_network

    try:
        with warnings.catch_warnings():
            # channels < 16 gives upstream's channel attention (dim // 16 hidden units) an empty
            # layer; torch warns about initialising it. Harmless: the layer then only adds its bias.
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op")
            return build_network(card.network, scan_backend=scan_backend, **card.hyperparameters)
    except (TypeError, ValueError) as e:
        raise ModelError(f"model card {card.name}: hyperparameters {card.hyperparameters} do not fit "
                         f"network {card.network}: {e}") from e


def check_state_dict(network, state: dict, source: str) -> None:
    """Raise `ModelError` listing missing/unexpected keys and shape mismatches against `network`."""
    expected = network.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: weights {tuple(state[k].shape)}, network {tuple(v.shape)}"
              for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:4])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:4])})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches (e.g. {'; '.join(shapes[:3])})")
    if problems:
        raise ModelError(f"{source} do not match the network: " + "; ".join(problems)
                         + ". Check that the card's network and hyperparameters are the ones the "
                           "weights were trained with.")


def load_model(card: ModelCard, device="cpu", scan_backend: str = "auto"):
    """Build the card's network, load and check its safetensors weights, eval mode on `device`."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = card.weights_path
    if not path.is_file():
        raise ModelError(f"weights of model {card.name} not found at {path}; "
                         f"the card names '{card.weights}' relative to its own folder")
    expected_sha = card.raw.get("weights_sha256")
    if expected_sha and sha256_of(path) != expected_sha:
        raise ModelError(f"weights {path} do not match the card's weights_sha256 (file changed or "
                         f"corrupt); re-download them or update the card with `nnmamba import-checkpoint`")
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"weights {path} of model {card.name} are not a readable safetensors file: {e}") from e
    network = build_for_card(card, scan_backend=scan_backend)
    check_state_dict(network, state, f"weights {path.name}")
    network.load_state_dict(state, strict=True)
    return network.to(torch.device(device)).eval()


def save_model(card_dict: dict, network_or_state, folder, overwrite: bool = False) -> ModelCard:
    """Write `folder/<name>/model.json` (with the weights' file name and sha256) + `weights.safetensors`.

    The card is validated and the weights are checked against the card's network before anything
    is written; both files are written to temporary names, then renamed.
    """
    import torch
    from safetensors.torch import save_file

    from nnmamba.errors import OutputExistsError
    from nnmamba.io.atomic import create_temporary_file

    card_dict = dict(card_dict)
    name = card_dict.get("name", "")
    folder = Path(folder) / name
    card_dict["weights"] = WEIGHTS_FILE
    card_dict.pop("weights_sha256", None)
    card = validate_card_dict(card_dict, where=f"{name} (to be saved)")
    state = network_or_state.state_dict() if hasattr(network_or_state, "state_dict") else network_or_state
    # Clone so tensors shared between modules (nnMamba's shared MambaLayer) are stored under
    # every key, as upstream's state_dict lists them; safetensors refuses shared storage.
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()
             if isinstance(v, torch.Tensor)}
    check_state_dict(build_for_card(card, scan_backend="reference"), state, f"weights for {name}")

    card_path, weights_path = folder / CARD_FILE, folder / WEIGHTS_FILE
    for p in (card_path, weights_path):
        if p.exists() and not overwrite:
            raise OutputExistsError(f"{p} exists; pass --overwrite to replace it")
    folder.mkdir(parents=True, exist_ok=True)
    # Created like a plain open() creates a file, so the finished files get the usual permissions.
    tmp_weights = str(create_temporary_file(folder, f".{name}.", ".safetensors.tmp"))
    try:
        save_file(state, tmp_weights, metadata={"nnmamba_card": name})
        card_dict["weights_sha256"] = sha256_of(tmp_weights)
        tmp_card = str(create_temporary_file(folder, f".{name}.", ".json.tmp"))
        with open(tmp_card, "w", encoding="utf-8") as f:
            json.dump(card_dict, f, indent=2)
            f.write("\n")
        os.replace(tmp_weights, weights_path)
        os.replace(tmp_card, card_path)
    finally:
        for tmp in (tmp_weights, locals().get("tmp_card")):
            if tmp and os.path.exists(tmp):
                os.unlink(tmp)
    return read_card(card_path)
