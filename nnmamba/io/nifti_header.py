"""Check a NIfTI-1 header ourselves before ITK reads it.

Found by the fuzz suite (Testing/fuzz): an infinite value in the sform (with sform_code > 0)
makes ITK's NIfTI reader loop forever inside `ReadImageInformation`, so a crafted 150-byte
`.nii.gz` froze `nnmamba predict` and a worker for good; and a singular sform is silently
"coerced to orthogonal", so the volume would be read with an orientation the file never had.
The 348-byte header is parsed here with `struct` and such files are refused by name.

Layout (NIfTI-1): dim[8] int16 at 40, pixdim[8] float32 at 76, qform_code/sform_code int16 at
252/254, quatern_b..d + qoffset_x..z float32 at 256, srow_x/y/z float32[4] at 280, magic at 344.
"""

from __future__ import annotations

import gzip
import math
import struct
from typing import Optional

import numpy as np

from nnmamba.errors import InputError

HEADER_BYTES = 348
NIFTI1_MAGICS = (b"n+1\0", b"ni1\0")
NIFTI_SUFFIXES = (".nii", ".nii.gz", ".hdr")


def read_nifti1_header(path: str) -> Optional[dict]:
    """The fields of `path`'s NIfTI-1 header that describe geometry; None if it is not NIfTI-1."""
    try:
        opener = gzip.open if path.lower().endswith(".gz") else open
        with opener(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
    except (OSError, EOFError, gzip.BadGzipFile):
        return None          # unreadable: SimpleITK says so in its own words
    if len(raw) < HEADER_BYTES or raw[344:348] not in NIFTI1_MAGICS:
        return None
    # The byte order is the one in which dim[0] is a dimension count (how niftilib decides too).
    for order in ("<", ">"):
        dims = struct.unpack_from(order + "8h", raw, 40)
        if 1 <= dims[0] <= 7:
            break
    else:
        return None
    return {"dim": dims, "pixdim": struct.unpack_from(order + "8f", raw, 76),
            "qform_code": struct.unpack_from(order + "h", raw, 252)[0],
            "sform_code": struct.unpack_from(order + "h", raw, 254)[0],
            "quatern": struct.unpack_from(order + "6f", raw, 256),
            "srow": struct.unpack_from(order + "12f", raw, 280)}


def check_nifti_header(path: str) -> None:
    """Raise `InputError` for a NIfTI-1 header ITK would hang on or silently reorient."""
    if not path.lower().endswith(NIFTI_SUFFIXES):
        return
    header = read_nifti1_header(path)
    if header is None:
        return
    used = header["dim"][0]
    if any(d < 1 for d in header["dim"][1:used + 1]):
        raise InputError(f"input {path}: its NIfTI header gives the sizes {list(header['dim'][1:used + 1])}; "
                         f"every size must be at least 1: fix the header")
    checks = [("pixdim", header["pixdim"][1:min(used, 3) + 1], True)]
    checks.append(("qform (quatern/qoffset)", header["quatern"], header["qform_code"] > 0))
    checks.append(("sform (srow_x/y/z)", header["srow"], header["sform_code"] > 0))
    for name, values, used_by_reader in checks:
        if used_by_reader and not all(math.isfinite(v) for v in values):
            raise InputError(f"input {path}: its NIfTI header has a {name} that is not finite "
                             f"({[float(v) for v in values]}); fix the header's geometry")
    if header["sform_code"] > 0:
        rotation_and_scale = np.array(header["srow"], dtype=np.float64).reshape(3, 4)[:, :3]
        norms = np.linalg.norm(rotation_and_scale, axis=0)
        if np.any(norms == 0) or abs(np.linalg.det(rotation_and_scale / norms)) < 1e-3:
            raise InputError(f"input {path}: its NIfTI sform {rotation_and_scale.tolist()} is singular (two "
                             f"axes along one line or an axis of length 0); the orientation cannot be known: "
                             f"fix the header")
