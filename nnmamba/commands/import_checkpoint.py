"""`nnmamba import-checkpoint`: an upstream nnMamba checkpoint -> model card + safetensors.

    nnmamba import-checkpoint model_best.pth --card my-seg-template.json --output models/

The checkpoint is a plain `state_dict` or an nnU-Net style dict holding it under 'state_dict' or
'network_weights'. It is read with `torch.load(weights_only=True)`, so no code inside it runs.
The template card gives the network, hyperparameters, preprocessing and output names; the
weights are checked against that network with a strict load before anything is written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nnmamba.commands._pipeline import report_errors
from nnmamba.errors import InputError, ModelError

STATE_KEYS = ("state_dict", "network_weights", "model_state_dict", "model")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="upstream checkpoint (.pth/.pt/.model)")
    parser.add_argument("--card", type=Path, required=True,
                        help="template model card JSON (network, hyperparameters, input, vocabulary)")
    parser.add_argument("--name", help="model name (default: the template's)")
    parser.add_argument("-o", "--output", type=Path, default=Path("models"), help="folder for card + weights")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing card/weights")


def read_state_dict(path: Path) -> dict:
    """The tensors of a checkpoint, safely (weights_only) and with DataParallel prefixes removed."""
    import pickle

    import torch

    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist")
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelError(f"checkpoint {path} holds more than tensors and plain containers, so it is not "
                         f"loaded (weights_only=True refuses to run code from a file): "
                         f"{str(e).splitlines()[0]}") from e
    except Exception as e:  # noqa: BLE001 - garbage makes the restricted unpickler raise anything
        raise ModelError(f"checkpoint {path} is not a readable PyTorch file "
                         f"({type(e).__name__}: {e})") from e
    state = loaded
    if isinstance(loaded, dict):
        for key in STATE_KEYS:
            if isinstance(loaded.get(key), dict):
                state = loaded[key]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        keys = list(loaded)[:6] if isinstance(loaded, dict) else type(loaded).__name__
        raise ModelError(f"checkpoint {path} has no state_dict (looked for a dict of tensors, or one under "
                         f"{', '.join(STATE_KEYS)}); found {keys}")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


@report_errors
def run(args) -> int:
    from nnmamba.models import save_model

    try:
        template = json.loads(args.card.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"template card {args.card} does not exist") from None
    except json.JSONDecodeError as e:
        raise ModelError(f"template card {args.card} is not valid JSON (line {e.lineno}: {e.msg})") from e
    if not isinstance(template, dict):
        raise ModelError(f"template card {args.card} must hold a JSON object")
    if args.name:
        template["name"] = args.name
    state = read_state_dict(args.checkpoint)
    template.setdefault("provenance", {})
    if isinstance(template["provenance"], dict):
        template["provenance"]["imported_from"] = args.checkpoint.name
    card = save_model(template, state, args.output, overwrite=args.overwrite)
    print(f"wrote {card.path} and {card.weights_path}: {card.summary()}")
    return 0
