"""Write files so that nothing is ever half-written or silently replaced.

Each writer renders into a temporary file in the target's folder, then renames it over the target
(`os.replace` is atomic on one file system). Existing targets are refused unless `overwrite`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from nnmamba.errors import OutputExistsError

# mkstemp creates 0600 files; finished outputs get the permissions a plain open() would give.
# The umask is read once here (reading it means setting it, which is not thread-safe later).
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


def check_free(paths: Iterable[Path], overwrite: bool) -> None:
    """Raise `OutputExistsError` naming every existing path unless `overwrite`."""
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"output exists: {', '.join(existing)}; pass --overwrite to replace "
                                f"(nothing was written)")


def write_atomically(path: Path, render: Callable[[Path], None]) -> Path:
    """Call `render(tmp_path)` then rename the temporary file to `path`; clean up on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the full suffix (".seg.nrrd") so writers that pick a format by extension still do.
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name.split('.')[0]}.tmp-", suffix=suffix)
    os.close(fd)
    tmp = Path(tmp)
    try:
        render(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text_atomically(path: Path, text: str) -> Path:
    return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
