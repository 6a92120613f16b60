"""Path safety: refuse file names that would crash the C++ readers and writers.

On POSIX a file name is bytes. Python keeps bytes that are not valid UTF-8 as lone surrogates
(`b"caf\\xe9"` -> `"caf\\udce9"`), and SimpleITK/ITK abort the whole process (`std::logic_error`,
exit 134) when given such a string: no Python `except` can catch that, so a folder run died at
that file and an output folder named so crashed after all the compute. Every path that goes to
C++ (or into a file name we write) passes `check_encodable_path` first.

Example:
    >>> check_encodable_path("t1.nrrd", "input")
    >>> check_encodable_path("caf\\udce9.nrrd", "input")
    Traceback (most recent call last):
    ...
    nnmamba.errors.InputError: input 'caf\\udce9.nrrd' is not valid UTF-8 (byte 0xe9 at position 3); rename it (e.g. with only ASCII letters, digits, '-', '_' and '.') and try again
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Union

from nnmamba.errors import InputError

PathLike = Union[str, bytes, os.PathLike]


def undecodable_byte(path: PathLike) -> tuple:
    """(name, byte value, position in that name) for the first path component holding a byte that
    is not UTF-8; None if the whole path is valid UTF-8."""
    for name in Path(os.fsdecode(path)).parts:
        for position, character in enumerate(name):
            if "\udc80" <= character <= "\udcff":   # how os.fsdecode keeps an undecodable byte
                return name, ord(character) - 0xDC00, position
            if "\ud800" <= character <= "\udfff":   # any other lone surrogate cannot be encoded either
                return name, ord(character), position
    return None


def check_encodable_path(path: PathLike, role: str = "path") -> None:
    """Raise `InputError` (naming `role`, e.g. "input" or "--output") unless `path` is valid UTF-8."""
    found = undecodable_byte(path)
    if found is None:
        return
    name, value, position = found
    shown = repr(os.fsdecode(path)) if name == os.fsdecode(path) else f"{os.fsdecode(path)!r}: the name {name!r}"
    raise InputError(f"{role} {shown} is not valid UTF-8 (byte {value:#04x} at position {position}); rename "
                     f"it (e.g. with only ASCII letters, digits, '-', '_' and '.') and try again")


def check_encodable_paths(paths: Iterable[PathLike], role: str = "path") -> None:
    """`check_encodable_path` for several paths, naming every bad one in one error."""
    bad = [os.fsdecode(p) for p in paths if undecodable_byte(p) is not None]
    if len(bad) == 1:
        check_encodable_path(bad[0], role)
    if bad:
        shown = ", ".join(repr(b) for b in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise InputError(f"{len(bad)} {role} names are not valid UTF-8: {shown}; rename them (e.g. with "
                         f"only ASCII letters, digits, '-', '_' and '.') and try again")


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when `a` and `b` name one existing file (through links, case-insensitive file systems)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return Path(os.path.abspath(a)) == Path(os.path.abspath(b))
