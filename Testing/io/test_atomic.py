"""nnmamba.io.atomic: finished outputs get a plain open()'s permissions; importing it changes nothing."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nnmamba.io.atomic import create_temporary_file, write_atomically, write_text_atomically


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_an_atomically_written_file_has_the_permissions_a_plain_open_gives(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    written = write_text_atomically(tmp_path / "out.mrk.json", "{}")
    assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_the_temporary_file_keeps_the_full_suffix_and_is_gone_afterwards(tmp_path):
    seen = []
    write_atomically(tmp_path / "case.seg.nrrd", lambda tmp: seen.append(tmp) or tmp.write_bytes(b"n"))
    assert seen[0].name.endswith(".seg.nrrd") and seen[0].parent == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.seg.nrrd"]


@pytest.mark.skipif(os.name == "nt", reason="POSIX umask")
def test_importing_and_writing_never_touch_the_process_umask(tmp_path):
    # A thread that creates files while another module flips the umask to 0 would make them
    # world-writable: the module must not call os.umask at all. The child counts the calls.
    code = ("import os, sys\n"
            "calls = []\n"
            "real = os.umask\n"
            "os.umask = lambda mask: calls.append(mask) or real(mask)\n"
            "from nnmamba.io.atomic import write_text_atomically\n"
            "write_text_atomically(__import__('pathlib').Path(sys.argv[1]), 'x')\n"
            "print(len(calls))\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.txt")], capture_output=True, text=True,
                         check=True, env=env)
    assert out.stdout.strip() == "0"


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_a_temporary_file_is_new_empty_and_has_a_plain_files_permissions(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("")
    first = create_temporary_file(tmp_path, ".model.", ".json.tmp")
    second = create_temporary_file(tmp_path, ".model.", ".json.tmp")
    assert first != second and first.stat().st_size == 0 and first.name.startswith(".model.")
    assert stat.S_IMODE(first.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
