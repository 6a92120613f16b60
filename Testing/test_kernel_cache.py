"""Triton's on-disk kernel cache lives in the user's cache folder, is set by the entry points and shown by `info`."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from nnmamba.kernel_cache import (CACHE_ENV, TRITON_ENV, triton_cache_dir, use_kernel_cache,
                                  user_cache_root)

HOME = "/home/ada"


def test_linux_keeps_kernels_under_xdg_cache_home_or_dot_cache():
    assert triton_cache_dir({}, "linux", HOME).path == Path(HOME, ".cache", "nnmamba", "triton")
    assert triton_cache_dir({"XDG_CACHE_HOME": "/scratch/c"}, "linux", HOME).path == Path("/scratch/c/nnmamba/triton")


def test_a_relative_xdg_cache_home_is_ignored_as_the_specification_says():
    location = triton_cache_dir({"XDG_CACHE_HOME": "relative/cache"}, "linux", HOME)
    assert location.path == Path(HOME, ".cache", "nnmamba", "triton")


def test_macos_and_windows_use_their_own_cache_folders():
    assert triton_cache_dir({}, "darwin", HOME).path == Path(HOME, "Library", "Caches", "nnmamba", "triton")
    windows = triton_cache_dir({"LOCALAPPDATA": r"C:\Users\ada\AppData\Local"}, "win32", r"C:\Users\ada")
    assert windows.path == Path(r"C:\Users\ada\AppData\Local", "nnmamba", "Cache", "triton")
    assert windows.source == "%LOCALAPPDATA%"
    assert user_cache_root({}, "win32", "/h").path == Path("/h", "AppData", "Local", "nnmamba", "Cache")


def test_nnmamba_cache_dir_moves_the_cache_on_every_platform():
    for platform in ("linux", "darwin", "win32"):
        location = triton_cache_dir({CACHE_ENV: "/data/nnm", "XDG_CACHE_HOME": "/x", "LOCALAPPDATA": "/y"},
                                    platform, HOME)
        assert location.path == Path("/data/nnm/triton")
        assert location.source == f"${CACHE_ENV}"


def test_a_triton_cache_dir_the_user_set_is_kept():
    location = triton_cache_dir({TRITON_ENV: "/fast/triton", CACHE_ENV: "/data/nnm"}, "linux", HOME)
    assert location.path == Path("/fast/triton")
    assert TRITON_ENV in location.source


def test_use_kernel_cache_creates_the_folder_and_points_triton_at_it(tmp_path):
    environ = {CACHE_ENV: str(tmp_path / "cache")}
    location = use_kernel_cache(environ)
    assert location.path == tmp_path / "cache" / "triton"
    assert location.path.is_dir()
    assert environ[TRITON_ENV] == str(tmp_path / "cache" / "triton")


def test_an_uncreatable_cache_folder_leaves_triton_its_default_and_warns(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    environ = {CACHE_ENV: str(blocker)}
    assert use_kernel_cache(environ) is None
    assert TRITON_ENV not in environ
    assert "cannot create the kernel cache folder" in caplog.text


def test_the_predict_entry_point_sets_the_cache_before_anything_else(tmp_path, monkeypatch):
    from nnmamba.cli import main

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(TRITON_ENV, "restored-by-monkeypatch")
    monkeypatch.delenv(TRITON_ENV)
    code = main(["predict", "-i", str(tmp_path / "missing.nrrd"), "-o", str(tmp_path / "out"), "--device", "cpu"])
    assert code != 0  # the input does not exist; the cache was set up first all the same
    assert os.environ[TRITON_ENV] == str(tmp_path / "cache" / "triton")
    assert (tmp_path / "cache" / "triton").is_dir()


def test_info_shows_where_kernels_are_kept_and_how_many(tmp_path, monkeypatch, capsys):
    from nnmamba.commands import info

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(TRITON_ENV, raising=False)
    (tmp_path / "triton" / "kernel-a").mkdir(parents=True)
    (tmp_path / "triton" / "kernel-b").mkdir()
    assert info.run(argparse.Namespace(json=False)) == 0
    text = capsys.readouterr().out
    assert f"kernel cache (Triton, from ${CACHE_ENV}):\n  {tmp_path / 'triton'}  (2 compiled kernels)" in text
    assert info.run(argparse.Namespace(json=True)) == 0
    report = json.loads(capsys.readouterr().out)["kernel_cache"]
    assert report == {"path": str(tmp_path / "triton"), "source": f"${CACHE_ENV}", "kernels": 2}
