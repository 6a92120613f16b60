"""CPU time of the demo per task: model load, then the full pipeline (resample, normalise, sliding
window, postprocess) on the embedded sample volume, with the shipped cards.

    .venv/bin/python benchmarks/pipeline.py [--threads 2] [--repeat 2] [--device cpu] [--tta]

Prints one row per task and the total; the target is all three tasks < 60 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (CI has 2 cores)")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per task (the minimum is shown)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--input", type=Path, help="another volume instead of the embedded sample")
    args = parser.parse_args(argv)

    import torch

    from nnmamba.data import sample_volume_path
    from nnmamba.inference import InferenceOptions, Predictor
    from nnmamba.io import read_volume
    from nnmamba.model_card import default_model

    torch.set_num_threads(args.threads)
    source = args.input or sample_volume_path()
    volume = read_volume(source)
    predictor = Predictor(InferenceOptions(device=args.device, tta=args.tta))
    print(f"input {source.name}: {'x'.join(map(str, volume.shape_kji[::-1]))} voxels; device {predictor.device}; "
          f"torch {torch.__version__}, {args.threads} threads; {platform.processor() or platform.machine()}")
    print(f"{'task':15s} {'model':22s} {'grid':>16s} {'load s':>7s} {'first s':>8s} {'best s':>7s}")
    total = 0.0
    for task in ("segmentation", "landmarks", "classification"):
        card = default_model(task)
        start = time.perf_counter()
        predictor.model(card)
        load = time.perf_counter() - start
        times = []
        for _ in range(max(1, args.repeat)):
            start = time.perf_counter()
            predictor.run(volume, [task], {task: card})
            if predictor.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        grid = "x".join(f"{s:g}" for s in card.spacing_mm) + " mm"
        print(f"{task:15s} {card.name:22s} {grid:>16s} {load:7.2f} {times[0]:8.2f} {min(times):7.2f}")
        total += load + times[0]
    print(f"{'total (load + first run)':>63s} {total:7.2f} s   target < 60 s on 2 cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
