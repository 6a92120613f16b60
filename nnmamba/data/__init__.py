"""Data shipped inside the package (found from a source checkout and from a pip install)."""

from __future__ import annotations

from pathlib import Path

SAMPLE_VOLUME = "sample_brain_mr.nrrd"
AFIDS_TEMPLATE = "afids/tpl-MNI152NLin2009cAsym_afids.fcsv"


def _packaged(name: str, what: str) -> Path:
    path = Path(__file__).resolve().parent / name
    if not path.is_file():
        raise FileNotFoundError(f"{what} is missing from the installation: {path}; reinstall nnmamba")
    return path


def sample_volume_path() -> Path:
    """Path of the embedded real brain MR sample (see README.md beside it for provenance)."""
    return _packaged(SAMPLE_VOLUME, "the embedded sample volume")


def afids_template_path() -> Path:
    """Path of the AFIDs project's 32 points on MNI152NLin2009cAsym (CC-BY-4.0; see afids/README.md)."""
    return _packaged(AFIDS_TEMPLATE, "the AFIDs template points")
