"""Reading upstream code straight from a git checkout or bare mirror, for the scripts that run it
to make reference vectors (make_nnmamba_vectors.py, make_segmamba_vectors.py): `git archive` of the
needed paths into a scratch folder, so nothing of that code lands in this repository.

    from git_archive import git_archive   # scripts/ is sys.path[0] when a script runs
    commit = git_archive(Path("/work/.mirror/ge-xing+SegMamba/repo"), "HEAD", ["model_segmamba"], scratch)
"""

from __future__ import annotations

import subprocess
import tarfile
from io import BytesIO
from pathlib import Path


def git_archive(repository: Path, ref: str, paths: list[str], into: Path) -> str:
    """Extract `paths` of `ref` from a git dir (bare or not) into `into`; return the commit."""
    commit = subprocess.run(["git", "-C", str(repository), "rev-parse", f"{ref}^{{commit}}"], check=True,
                            capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", "-C", str(repository), "archive", "--format=tar", commit, *paths],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return commit
