"""Data shipped inside the package (found from a source checkout and from a pip install)."""

from __future__ import annotations

from pathlib import Path

SAMPLE_VOLUME = "sample_brain_mr.nrrd"


def sample_volume_path() -> Path:
    """Path of the embedded real brain MR sample (see README.md beside it for provenance)."""
    path = Path(__file__).resolve().parent / SAMPLE_VOLUME
    if not path.is_file():
        raise FileNotFoundError(f"the embedded sample volume is missing from the installation: {path}; "
                                f"reinstall nnmamba")
    return path


AFIDS_TEMPLATE = "afids/tpl-MNI152NLin2009cAsym_afids.fcsv"


def afids_template_path() -> Path:
    """Path of the AFIDs project's 32 points on MNI152NLin2009cAsym (CC-BY-4.0; see afids/README.md)."""
    path = Path(__file__).resolve().parent / AFIDS_TEMPLATE
    if not path.is_file():
        raise FileNotFoundError(f"the AFIDs template points are missing from the installation: {path}; "
                                f"reinstall nnmamba")
    return path
