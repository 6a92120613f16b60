"""Hypothesis strategies for hostile image files: NRRD and NIfTI-1 bytes with generated headers,
file names (including bytes that are not UTF-8), and geometries and dtypes of well-formed images.

Headers are generated field by field from values a careless exporter or an attacker would write
(zero, negative, NaN and huge sizes and spacings, unknown types and encodings, truncated or
surplus voxel bytes), so most examples are refused and some are readable; the tests check that
each one is one or the other, never a crash.
"""

from __future__ import annotations

import math
import os
import struct

import numpy as np
from hypothesis import strategies as st

# ---- file names --------------------------------------------------------------------------------

NAME_CHARACTERS = st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0")
NON_UTF8_BYTES = st.sampled_from([b"\xe9", b"\xff", b"\xc3", b"\x80", b"\xed\xa0\x80", b"\xfe\xfe"])


@st.composite
def file_stems(draw) -> bytes:
    """A file name stem as bytes: text of any script, spaces, dashes, dots, and sometimes bytes that
    are not UTF-8 (what a Latin-1 system or a broken archive leaves)."""
    text = draw(st.text(NAME_CHARACTERS, min_size=1, max_size=24))
    stem = text.encode("utf-8")
    if draw(st.booleans()):
        at = draw(st.integers(0, len(stem)))
        stem = stem[:at] + draw(NON_UTF8_BYTES) + stem[at:]
    stem = stem.lstrip(b".") or b"x"       # no hidden files: a folder run skips those on purpose
    return stem[:100]


# ---- NRRD ----------------------------------------------------------------------------------------

NRRD_TYPES = {"uchar": 1, "signed char": 1, "short": 2, "ushort": 2, "int": 4, "uint": 4,
              "float": 4, "double": 8, "longlong": 8}
HOSTILE_SIZES = st.sampled_from([-2, -1, 0, 1, 100000, 2 ** 31, 2 ** 40, 7])
HOSTILE_NUMBERS = st.sampled_from([0.0, -1.0, 1e-9, 1e9, float("nan"), float("inf"), -float("inf"), 1e300])
# Fields a header may get wrong; each example corrupts none, one or a few of them.
NRRD_FIELDS = ["dimension", "sizes", "type", "encoding", "endian", "spacings", "directions", "origin",
               "length", "extra line"]


def _number(value: float) -> str:
    value = float(value)
    return "nan" if math.isnan(value) else repr(value)


def _voxel_bytes(draw, kind: str, voxels: int) -> bytes:
    """Noise that is a readable, non-constant volume in NRRD type `kind` (little-endian)."""
    dtype = {"uchar": "u1", "signed char": "i1", "short": "<i2", "ushort": "<u2", "int": "<i4", "uint": "<u4",
             "float": "<f4", "double": "<f8", "longlong": "<i8"}[kind]
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    return rng.uniform(0, 100, voxels).astype(dtype).tobytes()


@st.composite
def nrrd_files(draw) -> bytes:
    """A NRRD file: a well-formed header and voxels, then none, one or several fields corrupted
    (sizes, type, encoding, spacings, directions, voxel byte count, stray lines)."""
    corrupt = set(draw(st.lists(st.sampled_from(NRRD_FIELDS), max_size=3)))
    dimension = draw(st.sampled_from([2, 4, 1, 0, 17])) if "dimension" in corrupt else 3
    sizes = [draw(st.integers(2, 9)) for _ in range(max(dimension, 0))]
    if "sizes" in corrupt and sizes:
        sizes[draw(st.integers(0, len(sizes) - 1))] = draw(HOSTILE_SIZES)
    kind = draw(st.sampled_from(sorted(NRRD_TYPES)))
    shown_kind = draw(st.sampled_from(["complex", "block", "", "float16"])) if "type" in corrupt else kind
    encoding = draw(st.sampled_from(["raw", "gzip", "ascii"]))
    shown_encoding = draw(st.sampled_from(["bzip2", "hex", "nonsense"])) if "encoding" in corrupt else encoding
    endian = draw(st.sampled_from(["big", "middle"])) if "endian" in corrupt else "little"
    lines = ["NRRD0004", f"type: {shown_kind}", f"dimension: {dimension}", "sizes: " + " ".join(map(str, sizes)),
             f"encoding: {shown_encoding}", f"endian: {endian}"]
    if dimension == 3:
        spacing = [draw(st.floats(0.3, 4.0)) for _ in range(3)]
        if "spacings" in corrupt:
            spacing[draw(st.integers(0, 2))] = draw(HOSTILE_NUMBERS)
        vectors = np.diag(spacing)
        if "directions" in corrupt:
            vectors[draw(st.integers(0, 2))] = [draw(HOSTILE_NUMBERS) for _ in range(3)]
        origin = [draw(st.floats(-200, 200)) for _ in range(3)]
        if "origin" in corrupt:
            origin[draw(st.integers(0, 2))] = draw(HOSTILE_NUMBERS)
        lines += ["space: left-posterior-superior",
                  "space directions: " + " ".join("(" + ",".join(_number(v) for v in row) + ")" for row in vectors),
                  "space origin: (" + ",".join(_number(v) for v in origin) + ")"]
    if "extra line" in corrupt:
        lines.insert(draw(st.integers(1, len(lines))), draw(st.sampled_from(
            ["kinds: domain domain domain", "data file: LIST", "data file: /etc/passwd", "data file: missing.raw",
             "line skip: -3", "byte skip: 99999999", "content: \u00e9t\u00e9", "sizes: 3 3", "# a comment"])))
    claimed = math.prod(sizes) if sizes and all(0 < s <= 16 for s in sizes) else 0
    voxels = claimed if 0 < claimed <= 4096 else 8
    payload = _voxel_bytes(draw, kind, voxels)
    if "length" in corrupt:
        payload = payload[:draw(st.sampled_from([0, 1, max(len(payload) - 1, 0)]))] + \
            draw(st.sampled_from([b"", b"\0" * 7]))
    if encoding == "gzip":
        import gzip

        payload = gzip.compress(payload)
    elif encoding == "ascii":
        dtype = {1: "u1", 2: "<i2", 4: "<f4", 8: "<f8"}[NRRD_TYPES[kind]]
        usable = len(payload) // np.dtype(dtype).itemsize * np.dtype(dtype).itemsize
        payload = " ".join(repr(v) for v in np.frombuffer(payload[:usable], dtype).tolist()).encode()
    return ("\n".join(lines) + "\n\n").encode("utf-8") + payload


# ---- NIfTI-1 -------------------------------------------------------------------------------------

NIFTI_DATATYPES = {2: 1, 4: 2, 8: 4, 16: 4, 64: 8, 256: 1, 512: 2, 768: 4, 1024: 8}
# float32 fields: the hostile values that fit one
HOSTILE_FLOAT32 = st.sampled_from([0.0, -1.0, 1e-9, 1e9, float("nan"), float("inf"), -float("inf"), 3.4e38])
NIFTI_FIELDS = ["sizeof_hdr", "dim", "datatype", "pixdim", "vox_offset", "qform", "sform", "magic", "length"]


@st.composite
def nifti_files(draw) -> bytes:
    """A single-file NIfTI-1 (`.nii`): a well-formed 348-byte header with none, one or several
    fields corrupted, then the voxels."""
    corrupt = set(draw(st.lists(st.sampled_from(NIFTI_FIELDS), max_size=3)))
    dims = [3] + [draw(st.integers(2, 9)) for _ in range(3)] + [1, 1, 1, 1]
    if "dim" in corrupt:
        dims[draw(st.integers(0, 7))] = draw(st.sampled_from([-1, 0, 1, 8, 32767, -32768]))
    datatype = draw(st.sampled_from(sorted(NIFTI_DATATYPES)))
    itemsize = NIFTI_DATATYPES[datatype]
    shown_datatype = draw(st.sampled_from([0, 1, 128, 1536, 2048, 9999])) if "datatype" in corrupt else datatype
    pixdim = [1.0] + [draw(st.floats(0.3, 4.0)) for _ in range(3)] + [1.0] * 4
    if "pixdim" in corrupt:
        pixdim[draw(st.integers(0, 3))] = draw(HOSTILE_FLOAT32)
    quatern = [draw(st.floats(-1, 1)) for _ in range(3)] + [draw(st.floats(-200, 200)) for _ in range(3)]
    if "qform" in corrupt:
        quatern[draw(st.integers(0, 5))] = draw(HOSTILE_FLOAT32)
    srows = [draw(st.floats(-3, 3)) for _ in range(12)]
    if "sform" in corrupt:
        srows[draw(st.integers(0, 11))] = draw(HOSTILE_FLOAT32)
    qform_code, sform_code = draw(st.sampled_from([0, 1, 2])), draw(st.sampled_from([0, 1, 2]))

    header = bytearray(348)
    struct.pack_into("<i", header, 0, draw(st.sampled_from([0, 540, 1 << 24])) if "sizeof_hdr" in corrupt else 348)
    struct.pack_into("<8h", header, 40, *dims)
    struct.pack_into("<hh", header, 70, shown_datatype, itemsize * 8)
    struct.pack_into("<8f", header, 76, *pixdim)
    struct.pack_into("<f", header, 108, draw(st.sampled_from([0.0, 348.0, 1e9, -16.0]))
                     if "vox_offset" in corrupt else 352.0)
    struct.pack_into("<ff", header, 112, 1.0, 0.0)           # scl_slope, scl_inter
    struct.pack_into("<hh", header, 252, qform_code, sform_code)
    struct.pack_into("<6f", header, 256, *quatern)
    struct.pack_into("<12f", header, 280, *srows)
    header[344:348] = draw(st.sampled_from([b"ni1\0", b"n+2\0", b"\0\0\0\0"])) if "magic" in corrupt else b"n+1\0"
    voxels = math.prod(dims[1:4]) if all(0 < d <= 16 for d in dims[1:4]) else 8
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    payload = rng.integers(0, 100, voxels * itemsize, dtype=np.uint8).tobytes()
    if "length" in corrupt:
        payload = payload[:draw(st.sampled_from([0, 5, max(len(payload) - 1, 0)]))]
    return bytes(header) + b"\0\0\0\0" + payload


# ---- well-formed images: geometries and dtypes ---------------------------------------------------

DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64", "int64"]


@st.composite
def geometries(draw) -> dict:
    """Origin, spacing and direction: mostly proper rotations (some left-handed) with plausible
    spacing; now and then an absurd spacing, a far origin or a singular direction."""
    spacing = [draw(st.floats(0.3, 5.0)) for _ in range(3)]
    origin = [draw(st.floats(-500, 500)) for _ in range(3)]
    direction = _rotation(*[draw(st.floats(-math.pi, math.pi)) for _ in range(3)])
    if draw(st.booleans()):
        direction[:, 0] *= -1                         # a left-handed (flipped) frame: still |det| 1
    hostile = draw(st.sampled_from([None] * 6 + ["spacing", "origin", "singular"]))
    if hostile == "spacing":
        spacing[draw(st.integers(0, 2))] = draw(st.sampled_from([1e-6, 500.0, 0.0, -1.0]))
    elif hostile == "origin":
        origin[draw(st.integers(0, 2))] = draw(st.sampled_from([1e12, -1e7]))
    elif hostile == "singular":
        direction[:, 2] = direction[:, 1]             # two index axes along one line
    return {"spacing": spacing, "origin": origin, "direction": direction}


def _rotation(a: float, b: float, c: float) -> np.ndarray:
    ca, sa, cb, sb, cc, sc = math.cos(a), math.sin(a), math.cos(b), math.sin(b), math.cos(c), math.sin(c)
    rz = np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rx = np.array([[1, 0, 0], [0, cc, -sc], [0, sc, cc]])
    return rz @ ry @ rx


@st.composite
def voxel_arrays(draw) -> np.ndarray:
    """A small [k, j, i] array of a drawn dtype: noise, constant, or with a NaN."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = tuple(draw(st.sampled_from([2, 3, 5, 8, 9, 1])) for _ in range(3))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    info = np.iinfo(dtype) if dtype.kind in "iu" else None
    lo, hi = (max(info.min, -1000), min(info.max, 1000)) if info else (-1000.0, 1000.0)
    array = rng.uniform(lo, hi, shape).astype(dtype)
    content = draw(st.sampled_from(["noise"] * 6 + ["constant", "nan"]))
    if content == "constant":
        array[...] = array.flat[0]
    elif content == "nan" and dtype.kind == "f":
        array.flat[array.size // 2] = np.nan
    return array


def path_bytes(folder, stem: bytes, suffix: str) -> bytes:
    return os.path.join(os.fsencode(folder), stem + suffix.encode())
