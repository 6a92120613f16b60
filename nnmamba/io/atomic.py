"""Write files so that nothing is ever half-written or silently replaced.

Each writer renders into a temporary file in the target's folder, then renames it over the target
(`os.replace` is atomic on one file system). Existing targets are refused unless `overwrite`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Callable, Iterable

from nnmamba.errors import OutputExistsError
from nnmamba.io.paths import check_encodable_path

# The temporary file is created like a plain open() creates a file (0666 minus the umask, which
# the OS applies), so the finished output has the usual permissions without this process ever
# reading the umask: os.umask can only be read by setting it, process-wide and racy with threads.
TEMPORARY_FILE_MODE = 0o666
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def check_free(paths: Iterable[Path], overwrite: bool) -> None:
    """Raise `OutputExistsError` naming every existing path unless `overwrite`.

    A symbolic link counts as existing even when it points nowhere (`lexists`): replacing it is
    replacing something of the user's, and `Path.exists` follows the link and says False."""
    existing = [str(p) for p in paths if os.path.lexists(p)]
    if existing and not overwrite:
        raise OutputExistsError(f"output exists: {', '.join(existing)}; pass --overwrite to replace "
                                f"(nothing was written)")


def write_atomically(path: Path, render: Callable[[Path], None]) -> Path:
    """Call `render(tmp_path)` then rename the temporary file to `path`; clean up on failure."""
    path = Path(path)
    check_encodable_path(path, "output")   # SimpleITK aborts the process on such a name
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the full suffix (".seg.nrrd") so writers that pick a format by extension still do.
    suffix = "".join(path.suffixes) or ".tmp"
    tmp = create_temporary_file(path.parent, f".{path.name.split('.')[0]}.tmp-", suffix)
    try:
        render(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def create_temporary_file(folder: Path, prefix: str, suffix: str, attempts: int = 100) -> Path:
    """A new empty file with a random name in `folder` (never an existing one: O_EXCL)."""
    for _ in range(attempts):
        candidate = folder / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            os.close(os.open(candidate, _CREATE_FLAGS, TEMPORARY_FILE_MODE))
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"could not create a temporary file in {folder} after {attempts} attempts; "
                          f"remove the leftover '{prefix}*' files there")


def write_text_atomically(path: Path, text: str) -> Path:
    return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
