"""How close the AFIDs template fit alone can come: the template (the AFIDs project's points on
MNI152NLin2009cAsym, packaged in nnmamba/data/afids) fitted to each held-out case's TRUE points, as if
every detection were perfect, by the robust similarity fit inference uses and by plain least squares.

    python benchmarks/landmark_template_fit.py --data data/prepared

Prints per held-out case the mean radial error (mm) of the fitted template points, and of the
template answered unchanged. This is the floor of the fit-only answer (a detection replaced by its
fitted template point), not the model's accuracy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nnmamba.data import afids_template_path  # noqa: E402
from nnmamba.inference.landmark_fit import robust_similarity_fit, umeyama_similarity  # noqa: E402
from nnmamba.io.markups import read_fcsv  # noqa: E402
from nnmamba.train.data import load_cases, read_manifest  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    args = parser.parse_args(argv)
    manifest = read_manifest(args.data)
    points, rows = read_fcsv(afids_template_path())
    by_description = {row["desc"].strip().lower(): point for row, point in zip(rows, points)}
    template = np.array([by_description[d.strip().lower()] for d in manifest["landmarks"]["descriptions"]])
    for case in load_cases(args.data, "landmarks", "heldout"):
        truth = np.asarray(case.landmarks_lps, dtype=np.float64)
        robust = robust_similarity_fit(template, truth)
        scale, rotation, translation = umeyama_similarity(template, truth)
        least_squares = scale * template @ rotation.T + translation
        print(f"{case.name}: robust fit {np.linalg.norm(robust.fitted - truth, axis=1).mean():.2f} mm "
              f"(scale {robust.scale:.3f}, {int(robust.inliers.sum())} of {len(truth)} points weighted), "
              f"least squares {np.linalg.norm(least_squares - truth, axis=1).mean():.2f} mm, "
              f"template unchanged {np.linalg.norm(template - truth, axis=1).mean():.2f} mm")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
