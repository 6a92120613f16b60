"""Issue 22: inputs an attacker or a careless user gives `nnmamba predict` — odd file names, clashing
names, output folders inside input folders, broken cards, links, lying headers. Each is refused
with a specific message before anything is computed, and nothing of the user's is changed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk

from nnmamba.cli import main

import tiny_models as tiny  # on the path through conftest.py

REPO = Path(__file__).resolve().parent.parent.parent
pytestmark = pytest.mark.usefixtures("use_tiny_models")  # conftest.py
NON_UTF8 = b"caf\xe9"   # Latin-1 "café": not valid UTF-8


def run_cli(*argv) -> int:
    return main(["predict", "--device", "cpu", *map(str, argv)])


def run_installed(*argv, models_dir: Path) -> subprocess.CompletedProcess:
    """The real command in its own process: a C++ abort shows as a negative return code there."""
    env = dict(os.environ, NNMAMBA_MODELS_DIR=str(models_dir), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "nnmamba", "predict", "--device", "cpu", *argv],
                          capture_output=True, env=env, cwd=REPO, timeout=180)


def write_phantom(path, seed: int = 0):
    """The phantom at `path` (str, Path or bytes); written under a plain name, then renamed,
    because SimpleITK itself aborts the process on a name that is not UTF-8."""
    folder, name = os.path.split(os.fsencode(path))
    plain = os.path.join(folder, b"plain-" + os.urandom(4).hex().encode() + name[name.index(b"."):])
    sitk.WriteImage(tiny.head_phantom(seed=seed), os.fsdecode(plain))
    os.rename(plain, os.fsencode(path))
    return path


def everything_under(folder: Path) -> dict:
    """name -> bytes of every file under `folder` (names as bytes: some are not UTF-8)."""
    root = os.fsencode(folder)
    found = {}
    for parent, _, files in os.walk(root):
        for name in files:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = f.read()
    return found


# ---- 1. file names that are not UTF-8 ---------------------------------------------------------

def test_a_non_utf8_input_name_is_refused_by_the_real_command_instead_of_aborting(tmp_path, models_dir):
    """SimpleITK aborted the whole process (std::logic_error, exit 134) on such a name."""
    scan = write_phantom(os.path.join(os.fsencode(tmp_path), NON_UTF8 + b".nrrd"))
    proc = run_installed(os.fsdecode(scan), "--tasks", "classification", "-o", str(tmp_path / "out"),
                         models_dir=models_dir)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, err
    assert "the name 'caf\\udce9.nrrd' is not valid UTF-8 (byte 0xe9 at position 3)" in err and "rename it" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_a_folder_run_with_one_non_utf8_name_is_refused_before_any_case_runs(tmp_path, models_dir):
    scans = tmp_path / "scans"
    scans.mkdir()
    write_phantom(scans / "a.nrrd")
    write_phantom(os.path.join(os.fsencode(scans), NON_UTF8 + b".nrrd"), seed=1)
    proc = run_installed(str(scans), "--tasks", "classification", "-o", str(tmp_path / "out"), models_dir=models_dir)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2 and "not valid UTF-8" in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()    # not even the good case: nothing was computed


def test_a_non_utf8_output_folder_is_refused_before_computing_and_leaves_no_temporary_file(tmp_path, models_dir):
    """It crashed after all the compute and left a 0-byte `.tmp-*` file."""
    scan = write_phantom(tmp_path / "head.nrrd")
    out = os.path.join(os.fsencode(tmp_path), b"out-" + NON_UTF8)
    proc = run_installed(str(scan), "--tasks", "classification", "-o", os.fsdecode(out), models_dir=models_dir)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2 and "--output" in err and "not valid UTF-8" in err, err
    assert "classification in" not in proc.stdout.decode()       # refused before computing
    assert set(everything_under(tmp_path)) == {b"head.nrrd"}


# ---- 2. two inputs, one output name -----------------------------------------------------------

def test_two_inputs_with_the_same_stem_are_refused_before_computing_even_with_overwrite(tmp_path, capsys):
    scans = tmp_path / "scans"
    scans.mkdir()
    write_phantom(scans / "a.nii.gz")
    write_phantom(scans / "a.nrrd", seed=1)
    write_phantom(scans / "b.nrrd", seed=2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.probabilities.json").write_text("the user's earlier result")
    rc = run_cli(scans, "--tasks", "classification", "--no-summary", "-o", out, "--overwrite")
    err = capsys.readouterr().err
    assert rc == 2 and "several inputs would write the same output files" in err
    assert "a.nii.gz and" in err and "a.nrrd" in err and "nothing was computed" in err
    assert everything_under(out) == {b"b.probabilities.json": b"the user's earlier result"}


def test_names_that_differ_only_in_case_are_refused_as_one_output_name(tmp_path, capsys):
    """On macOS and Windows `A.seg.nrrd` and `a.seg.nrrd` are one file."""
    scans = tmp_path / "scans"
    scans.mkdir()
    write_phantom(scans / "Case.nrrd")
    write_phantom(scans / "case.nii", seed=1)
    assert run_cli(scans, "--tasks", "classification", "-o", tmp_path / "out") == 2
    assert "several inputs would write the same output files" in capsys.readouterr().err


# ---- 3. our own outputs are never inputs -------------------------------------------------------

def test_a_folder_run_never_takes_its_own_outputs_as_new_cases(tmp_path, capsys):
    scans = tmp_path / "scans"
    scans.mkdir()
    write_phantom(scans / "a.nrrd")
    assert run_cli(scans, "--tasks", "segmentation", "--no-summary", "-o", scans, "--allow-output-in-input") == 0
    assert (scans / "a.seg.nrrd").is_file()
    capsys.readouterr()
    # The second run over the same folder sees one case, `a`, whose output exists: nothing new.
    assert run_cli(scans, "--tasks", "segmentation", "--no-summary", "-o", scans, "--allow-output-in-input") == 4
    err = capsys.readouterr().err
    assert "output exists" in err and "a.seg.seg.nrrd" not in err
    assert sorted(p.name for p in scans.iterdir()) == ["a.nrrd", "a.seg.nrrd", "a.volumes.tsv"]


@pytest.mark.parametrize("where", ["the input folder", "a folder inside it"])
def test_an_output_folder_inside_an_input_folder_is_refused_unless_allowed(where, tmp_path, capsys):
    scans = tmp_path / "scans"
    scans.mkdir()
    write_phantom(scans / "a.nrrd")
    out = scans if where == "the input folder" else scans / "results"
    assert run_cli(scans, "--tasks", "classification", "-o", out) == 2
    err = capsys.readouterr().err
    assert "is inside the input folder" in err and "--allow-output-in-input" in err
    assert sorted(p.name for p in scans.iterdir()) == ["a.nrrd"]


def test_an_output_that_would_replace_an_input_is_refused_even_with_overwrite(tmp_path, capsys):
    """`-i x.seg.nrrd` has the stem `x`: its segmentation output would be the input itself."""
    scan = write_phantom(tmp_path / "x.seg.nrrd")
    before = scan.read_bytes()
    rc = run_cli(scan, "--tasks", "segmentation", "--no-summary", "-o", tmp_path, "--overwrite")
    err = capsys.readouterr().err
    assert rc == 2 and "would replace the input" in err
    assert scan.read_bytes() == before


# ---- 4. a model card with a syntax error -------------------------------------------------------

def test_a_model_card_with_a_json_syntax_error_is_named_with_its_line_not_dropped(tmp_path, monkeypatch, capsys):
    """`_is_card` swallowed the error: `nnmamba models` listed the others and exited 0."""
    broken = tmp_path / "my-seg"
    broken.mkdir()
    (broken / "model.json").write_text('{\n  "schema_version": 1,\n  "name": "my-seg",\n  "task": \n}\n')
    loose = tmp_path / "loose.json"
    loose.write_text('{"schema_version": 1, "network": "nnMambaSeg",,}')
    (tmp_path / "notes.json").write_text("this is not a card and not JSON")     # still skipped
    monkeypatch.setenv("NNMAMBA_MODELS_DIR", str(tmp_path))
    assert main(["models"]) == 3
    assert f"model card {loose} is not valid JSON (line 1, column 47" in capsys.readouterr().err
    loose.unlink()
    assert main(["models"]) == 3
    err = capsys.readouterr().err
    assert f"model card {broken / 'model.json'} is not valid JSON (line 5, column 1" in err


# ---- 5. an unknown scan backend ---------------------------------------------------------------

def test_an_unknown_scan_backend_is_refused_naming_the_option_not_the_model(tmp_path, capsys):
    scan = write_phantom(tmp_path / "head.nrrd")
    assert run_cli(scan, "--tasks", "classification", "-o", tmp_path / "out", "--scan-backend", "nonsense") == 2
    err = capsys.readouterr().err
    assert "--scan-backend 'nonsense' is not a scan backend" in err and "bad_model" not in err


# ---- 6. a dangling link where an output goes ---------------------------------------------------

def test_a_dangling_symlink_at_an_output_path_is_kept_without_overwrite(tmp_path, capsys):
    scan = write_phantom(tmp_path / "head.nrrd")
    out = tmp_path / "out"
    out.mkdir()
    link = out / "head.probabilities.json"
    link.symlink_to(tmp_path / "elsewhere" / "result.json")
    rc = run_cli(scan, "--tasks", "classification", "--no-summary", "-o", out)
    err = capsys.readouterr().err
    assert rc == 4 and "output exists" in err and str(link) in err
    assert link.is_symlink() and os.readlink(link) == str(tmp_path / "elsewhere" / "result.json")


# ---- 10. a header that claims more voxels than there is memory ---------------------------------

@pytest.mark.parametrize("header,message", [
    # More than any memory here: refused from the header alone, not by a failing allocation.
    (b"sizes: 100000 100000 100000\nencoding: raw\n", "header claims 100000 x 100000 x 100000 voxels"),
    # 1.5 GiB would fit in memory: only the file's size shows the lie (ITK allocates first).
    (b"sizes: 2000 2000 100\nencoding: gzip\n", "header claims 2000 x 2000 x 100 voxels (1525.9 MiB)"),
])
def test_a_header_claiming_more_voxels_than_memory_or_its_file_holds_is_refused_before_reading(
        header, message, tmp_path, capsys):
    scan = tmp_path / "liar.nrrd"
    scan.write_bytes(b"NRRD0004\ntype: float\ndimension: 3\nspacings: 1 1 1\nendian: little\n" + header + b"\n"
                     + bytes(64))
    rc = run_cli(scan, "--tasks", "classification", "-o", tmp_path / "out")
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert "out of memory" not in err and "--tile-batch" not in err
