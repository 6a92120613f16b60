"""Where compiled GPU kernels are kept between processes: Triton's on-disk cache in the user's cache folder.

Triton compiles each kernel variant the first time a process launches it (about a second each on an
H100) and keeps the binary in its cache folder; a later process that finds it there loads it in
milliseconds. So the cache decides whether a fresh worker or a one-file `nnmamba predict` pays the
compilation again. It lives in the platform's per-user cache folder, beside nothing of the user's:

    Linux and others   $XDG_CACHE_HOME/nnmamba/triton   (~/.cache/nnmamba/triton)
    macOS              ~/Library/Caches/nnmamba/triton
    Windows            %LOCALAPPDATA%\\nnmamba\\Cache\\triton

`NNMAMBA_CACHE_DIR` moves the whole nnmamba cache (its `triton` sub-folder holds the kernels); a
`TRITON_CACHE_DIR` the user set already is Triton's own setting and is kept as it is.

The folder is chosen by the pure `triton_cache_dir`; the process environment is changed only by
`use_kernel_cache`, which the command-line and worker entry points call (never library code at
import: STYLE.md rule 6). The variable is inherited by child processes (torchrun ranks).

Example:
    >>> triton_cache_dir({"XDG_CACHE_HOME": "/scratch/cache"}, "linux", "/home/ada").path.as_posix()
    '/scratch/cache/nnmamba/triton'
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Mapping, MutableMapping, Optional

log = logging.getLogger(__name__)

CACHE_ENV = "NNMAMBA_CACHE_DIR"
TRITON_ENV = "TRITON_CACHE_DIR"
APP = "nnmamba"


@dataclass(frozen=True)
class CacheLocation:
    """A cache folder and what chose it (an environment variable or the platform's convention)."""

    path: Path
    source: str


def user_cache_root(environ: Mapping[str, str], platform: str, home: str) -> CacheLocation:
    """The nnmamba cache folder for `platform` (sys.platform's values) and the user's `home`."""
    override = environ.get(CACHE_ENV, "").strip()
    if override:
        return CacheLocation(Path(os.path.expanduser(override)), f"${CACHE_ENV}")
    if platform.startswith("win"):
        base = environ.get("LOCALAPPDATA", "").strip()
        if base:
            return CacheLocation(Path(base) / APP / "Cache", "%LOCALAPPDATA%")
        return CacheLocation(Path(home) / "AppData" / "Local" / APP / "Cache", "the Windows default")
    if platform == "darwin":
        return CacheLocation(Path(home) / "Library" / "Caches" / APP, "the macOS default")
    xdg = environ.get("XDG_CACHE_HOME", "").strip()
    # the XDG specification: a relative path is invalid and must be ignored
    if xdg and PurePath(xdg).is_absolute():
        return CacheLocation(Path(xdg) / APP, "$XDG_CACHE_HOME")
    return CacheLocation(Path(home) / ".cache" / APP, "the XDG default (~/.cache)")


def triton_cache_dir(environ: Optional[Mapping[str, str]] = None, platform: Optional[str] = None,
                     home: Optional[str] = None) -> CacheLocation:
    """Where Triton keeps our compiled kernels: the user's own TRITON_CACHE_DIR, else <nnmamba cache>/triton.

    Each argument defaults to this process's (os.environ, sys.platform, the home folder).
    """
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    home = os.path.expanduser("~") if home is None else home
    own = environ.get(TRITON_ENV, "").strip()
    if own:
        return CacheLocation(Path(os.path.expanduser(own)), f"${TRITON_ENV} (set before nnmamba started)")
    root = user_cache_root(environ, platform, home)
    return CacheLocation(root.path / "triton", root.source)


def use_kernel_cache(environ: Optional[MutableMapping[str, str]] = None) -> Optional[CacheLocation]:
    """For entry points: make Triton keep its kernels in `triton_cache_dir()` (sets TRITON_CACHE_DIR
    in `environ`, default os.environ, and creates the folder). Returns the location, or None when the
    folder cannot be created; then Triton keeps its own default (~/.triton/cache) and a warning says why."""
    environ = os.environ if environ is None else environ
    location = triton_cache_dir(environ)
    try:
        location.path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        log.warning("cannot create the kernel cache folder %s (%s); Triton keeps its default folder. "
                    "Set %s to a writable folder to keep compiled kernels between runs",
                    location.path, e, CACHE_ENV)
        return None
    environ[TRITON_ENV] = str(location.path)
    log.debug("Triton kernel cache: %s (from %s)", location.path, location.source)
    return location
