"""A model's committed training state (`training_state/<model>/`, see its README) as a run folder that
`nnmamba train --resume` continues from.

The state is checkpoint.json (step, losses, held-out checks, ...) plus the weights: its own
checkpoint.safetensors, or - when the shipped model is the latest state, so the repository keeps
one copy of the tensors - the shipped weights, named in the JSON by their sha256 and checked.

    python -m nnmamba.train.training_state training_state/brain-structures-seg \
        models/brain-structures-seg/weights.safetensors /tmp/runs/brain-structures-seg
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from nnmamba.models import sha256_of
from nnmamba.train.checkpoint import CHECKPOINT, STATE


def restore(state_dir: Path, shipped_weights: Path, run_dir: Path) -> Path:
    """Write run_dir/checkpoint.safetensors + checkpoint.json from the committed state."""
    import json

    from safetensors.torch import load_file, save_file

    record = json.loads((state_dir / STATE).read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    if (state_dir / CHECKPOINT).is_file():
        shutil.copyfile(state_dir / CHECKPOINT, run_dir / CHECKPOINT)
    else:
        expected = record.get("shipped_weights_sha256")
        if expected is None or not shipped_weights.is_file() or sha256_of(shipped_weights) != expected:
            raise ValueError(f"{state_dir} has no {CHECKPOINT} and {shipped_weights} is not the weights its "
                             f"{STATE} names (sha256 {expected}); restore the state's weights first")
        tensors = load_file(str(shipped_weights))
        save_file({f"model.{k}": v for k, v in tensors.items()}, str(run_dir / CHECKPOINT))
    shutil.copyfile(state_dir / STATE, run_dir / STATE)
    return run_dir / CHECKPOINT


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m nnmamba.train.training_state STATE_DIR SHIPPED_WEIGHTS RUN_DIR", file=sys.stderr)
        return 2
    try:
        restore(Path(args[0]), Path(args[1]), Path(args[2]))
    except (OSError, ValueError) as e:
        print(f"training_state: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
