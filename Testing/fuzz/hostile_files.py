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
SIZES = st.one_of(st.integers(-2, 12), st.sampled_from([0, 1, 100000, 2 ** 31, 2 ** 40]))
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                    st.sampled_from([0.0, -1.0, 1e-9, 1e9, 1.0, 2.5]))


def _number(value: float) -> str:
    return "nan" if math.isnan(value) else repr(value)


@st.composite
def nrrd_files(draw) -> bytes:
    """A NRRD file: a generated header, then some voxel bytes (raw, gzip or as text)."""
    dimension = draw(st.sampled_from([3, 3, 3, 2, 4, 1, 0, 17]))
    sizes = [draw(SIZES) for _ in range(max(dimension, 0))]
    if draw(st.booleans()):                 # mostly plausible grids, so some files are readable
        sizes = [draw(st.integers(2, 10)) for _ in range(max(dimension, 0))]
    kind = draw(st.sampled_from(sorted(NRRD_TYPES) + ["complex", "block", ""]))
    encoding = draw(st.sampled_from(["raw", "raw", "gzip", "ascii", "hex", "bzip2", "nonsense"]))
    lines = ["NRRD0004", f"type: {kind}", f"dimension: {dimension}",
             "sizes: " + " ".join(map(str, sizes)), f"encoding: {encoding}",
             f"endian: {draw(st.sampled_from(['little', 'big', 'middle']))}"]
    if draw(st.booleans()):
        lines.append("spacings: " + " ".join(_number(draw(NUMBERS)) for _ in sizes))
    if dimension == 3 and draw(st.booleans()):
        vectors = [[draw(NUMBERS) for _ in range(3)] for _ in range(3)]
        lines.append("space: left-posterior-superior")
        lines.append("space directions: " + " ".join(
            "(" + ",".join(_number(v) for v in vector) + ")" for vector in vectors))
        lines.append("space origin: (" + ",".join(_number(draw(NUMBERS)) for _ in range(3)) + ")")
    if draw(st.booleans()):
        lines.insert(draw(st.integers(1, len(lines))), draw(st.sampled_from(
            ["kinds: domain domain domain", "data file: LIST", "data file: /etc/passwd", "line skip: -3",
             "byte skip: 99999999", "content: \u00e9t\u00e9", "sizes: 3 3", "# a comment"])))
    voxels = math.prod(s for s in sizes if s > 0) if sizes and all(0 < s <= 16 for s in sizes) else 8
    itemsize = NRRD_TYPES.get(kind, 4)
    exact = voxels * itemsize
    length = draw(st.sampled_from([exact, exact, 0, max(exact - 1, 0), exact + 7, 3]))
    if kind in ("float", "double") and draw(st.booleans()):   # finite noise: a readable volume
        noise = np.random.default_rng(length).normal(100, 30, voxels + 1)
        payload = noise.astype("<f4" if kind == "float" else "<f8").tobytes()[:length]
    else:
        payload = draw(st.binary(min_size=length, max_size=length)) if length <= 4096 else bytes(length)
    if encoding == "gzip":
        import gzip

        payload = gzip.compress(payload)
    elif encoding == "ascii":
        payload = " ".join(str(b) for b in payload).encode()
    return ("\n".join(lines) + "\n\n").encode("utf-8") + payload


# ---- NIfTI-1 -------------------------------------------------------------------------------------

NIFTI_DATATYPES = {2: 1, 4: 2, 8: 4, 16: 4, 64: 8, 256: 1, 512: 2, 768: 4, 128: 3, 32: 8, 2304: 4}


@st.composite
def nifti_files(draw) -> bytes:
    """A single-file NIfTI-1 (`.nii`): the 348-byte header with generated fields, then voxels."""
    plausible = draw(st.booleans())
    ndim = draw(st.sampled_from([3, 3, 2, 4, 1, 0, 8, -1]))
    dims = [draw(st.integers(2, 10)) if plausible else draw(SIZES) for _ in range(7)]
    dims = [max(min(d, 32767), -32768) for d in dims]
    datatype = draw(st.sampled_from(sorted(NIFTI_DATATYPES) + [0, 1, 1536, 9999]))
    itemsize = NIFTI_DATATYPES.get(datatype, 2)
    pixdim = [draw(NUMBERS) for _ in range(8)]
    if plausible:
        pixdim = [1.0] + [draw(st.floats(0.2, 5.0)) for _ in range(7)]
    sizeof_hdr = draw(st.sampled_from([348, 348, 348, 0, 540, 1 << 24]))
    vox_offset = draw(st.sampled_from([352.0, 352.0, 0.0, 348.0, 1e9, -16.0]))
    qform, sform = draw(st.sampled_from([0, 1, 2, 7])), draw(st.sampled_from([0, 1, 2, -3]))
    quatern = [draw(NUMBERS) for _ in range(6)]
    srows = [draw(NUMBERS) for _ in range(12)]
    magic = draw(st.sampled_from([b"n+1\0", b"n+1\0", b"ni1\0", b"n+2\0", b"\0\0\0\0"]))

    header = bytearray(348)
    struct.pack_into("<i", header, 0, sizeof_hdr)
    struct.pack_into("<8h", header, 40, ndim, *dims)
    struct.pack_into("<hh", header, 70, datatype, itemsize * 8)
    struct.pack_into("<8f", header, 76, *pixdim)
    struct.pack_into("<f", header, 108, vox_offset)
    struct.pack_into("<ff", header, 112, 1.0, 0.0)           # scl_slope, scl_inter
    struct.pack_into("<hh", header, 252, qform, sform)
    struct.pack_into("<6f", header, 256, *quatern)
    struct.pack_into("<12f", header, 280, *srows)
    header[344:348] = magic
    voxels = math.prod(dims[:3]) if all(0 < d <= 16 for d in dims[:3]) else 8
    length = draw(st.sampled_from([voxels * itemsize, voxels * itemsize, 0, 5]))
    rng = np.random.default_rng(length)
    payload = rng.integers(0, 255, length, dtype=np.uint8).tobytes()
    return bytes(header) + b"\0\0\0\0" + payload


# ---- well-formed images: geometries and dtypes ---------------------------------------------------

DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64", "int64"]


@st.composite
def geometries(draw) -> dict:
    """Origin, spacing and direction: mostly proper rotations, sometimes singular, flipped or NaN."""
    spacing = [draw(st.one_of(st.floats(0.3, 5.0), st.sampled_from([1e-6, 500.0, 0.0, -1.0]))) for _ in range(3)]
    origin = [draw(st.one_of(st.floats(-500, 500), st.sampled_from([1e12, -0.0]))) for _ in range(3)]
    angles = [draw(st.floats(-math.pi, math.pi)) for _ in range(3)]
    direction = _rotation(*angles)
    if draw(st.booleans()):
        direction[:, 0] *= -1                         # a left-handed (flipped) frame: still |det| 1
    if draw(st.integers(0, 5)) == 0:
        direction[:, 2] = direction[:, 1]             # singular: two axes the same
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
    shape = tuple(draw(st.integers(1, 9)) for _ in range(3))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    info = np.iinfo(dtype) if dtype.kind in "iu" else None
    lo, hi = (max(info.min, -1000), min(info.max, 1000)) if info else (-1000.0, 1000.0)
    array = rng.uniform(lo, hi, shape).astype(dtype)
    content = draw(st.sampled_from(["noise", "noise", "noise", "constant", "nan"]))
    if content == "constant":
        array[...] = array.flat[0]
    elif content == "nan" and dtype.kind == "f":
        array.flat[array.size // 2] = np.nan
    return array


def path_bytes(folder, stem: bytes, suffix: str) -> bytes:
    return os.path.join(os.fsencode(folder), stem + suffix.encode())
