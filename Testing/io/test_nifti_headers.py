"""NIfTI headers ITK mishandles, found by the fuzz suite (Testing/fuzz): refused by name before ITK
reads them. The reads run in a child process with a time limit, so a hang fails the test."""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def nifti(srow, sform_code: int = 1, dims=(3, 4, 5, 6)) -> bytes:
    """A NIfTI-1 `.nii` of int16 noise with the given sform (12 numbers) and sizes."""
    header = bytearray(348)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, *dims, *([1] * (8 - len(dims))))
    struct.pack_into("<hh", header, 70, 4, 16)                         # int16
    struct.pack_into("<8f", header, 76, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    struct.pack_into("<f", header, 108, 352.0)
    struct.pack_into("<ff", header, 112, 1.0, 0.0)
    struct.pack_into("<hh", header, 252, 0, sform_code)
    struct.pack_into("<12f", header, 280, *srow)
    header[344:348] = b"n+1\0"
    voxels = int(np.prod([max(d, 1) for d in dims[1:dims[0] + 1]]))
    data = np.random.default_rng(0).integers(0, 1000, voxels).astype("<i2").tobytes()
    return bytes(header) + bytes(4) + data


def read_in_child(path: Path) -> dict:
    code = ("import json, sys\nfrom nnmamba.io import read_volume\n"
            "try:\n    v = read_volume(sys.argv[1]); print(json.dumps({'read': list(v.array.shape)}))\n"
            "except Exception as e:\n    print(json.dumps({'type': type(e).__name__, 'message': str(e)}))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60,
                          env=env)
    return json.loads(proc.stdout.strip().splitlines()[-1])


IDENTITY = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]


@pytest.mark.parametrize("compressed", [False, True])
def test_a_nifti_with_an_infinite_sform_is_refused_instead_of_hanging_the_reader(tmp_path, compressed):
    data = nifti([1, 0, 0, 0, 0, 1, float("inf"), 0, 0, 0, 1, 0])
    path = tmp_path / ("inf.nii.gz" if compressed else "inf.nii")
    path.write_bytes(gzip.compress(data) if compressed else data)
    answer = read_in_child(path)          # ITK alone never returns from this file
    assert answer["type"] == "InputError" and "sform (srow_x/y/z) that is not finite" in answer["message"]


def test_a_nifti_with_a_singular_sform_is_refused_instead_of_silently_reoriented(tmp_path):
    path = tmp_path / "singular.nii"
    path.write_bytes(nifti([1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]))   # k has no direction, j = k
    answer = read_in_child(path)
    assert answer["type"] == "InputError" and "sform" in answer["message"] and "singular" in answer["message"]


def test_a_nifti_with_a_negative_size_is_refused_by_name(tmp_path):
    path = tmp_path / "negative.nii"
    path.write_bytes(nifti(IDENTITY, dims=(3, 4, -1, 6)))
    answer = read_in_child(path)
    assert answer["type"] == "InputError" and "sizes [4, -1, 6]" in answer["message"]


def test_a_plain_nifti_still_reads(tmp_path):
    path = tmp_path / "plain.nii"
    path.write_bytes(nifti(IDENTITY))
    assert read_in_child(path) == {"read": [1, 6, 5, 4]}
