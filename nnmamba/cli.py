"""The `nnmamba` command line.

Each subcommand lives in its own module under `nnmamba.commands` and exposes
`add_arguments(parser)` and `run(args) -> int`. Modules are imported only when their command
runs, so `nnmamba --help` and light commands stay fast and never import torch needlessly.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional, Sequence

# command name -> (module, one-line help)
COMMANDS = {
    "info": ("nnmamba.commands.info", "versions, devices and the scan backend that will be used"),
    "predict": ("nnmamba.commands.predict", "run segmentation / landmarks / classification on volumes"),
    "demo": ("nnmamba.commands.demo", "run all shipped tasks on the embedded sample volume"),
    "models": ("nnmamba.commands.models", "list the model cards"),
    "import-checkpoint": ("nnmamba.commands.import_checkpoint", "turn an upstream checkpoint into card + safetensors"),
    "serve": ("nnmamba.commands.serve", "run the persistent inference worker"),
    "train": ("nnmamba.commands.train", "train a model from a prepared dataset"),
    "evaluate": ("nnmamba.commands.evaluate", "measure a model on held-out data"),
}


def _available_commands() -> dict:
    found = {}
    for name, (module, help_text) in COMMANDS.items():
        if importlib.util.find_spec(module) is not None:
            found[name] = (module, help_text)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnmamba", description="nnMamba for 3D medical images")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in _available_commands().items():
        # add_help=False: the command module's own parser answers -h with its real options.
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Parse only the global options and the command name first; the command module adds its own.
    known, _ = parser.parse_known_args(argv)
    if known.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.DEBUG if known.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    module_name, help_text = _available_commands()[known.command]
    module = importlib.import_module(module_name)
    command_parser = argparse.ArgumentParser(prog=f"nnmamba {known.command}", description=help_text)
    module.add_arguments(command_parser)
    command_argv = argv[argv.index(known.command) + 1:]
    args = command_parser.parse_args(command_argv)
    return int(module.run(args) or 0)
