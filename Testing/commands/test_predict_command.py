"""`nnmamba predict` through the real command line: results, and every bad input refused with a
clear message, a non-zero exit code, and nothing of the user's overwritten."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnmamba.cli import main

import tiny_models as tiny  # on the path through conftest.py

REPO = Path(__file__).resolve().parent.parent.parent
pytestmark = pytest.mark.usefixtures("use_tiny_models")  # conftest.py


@pytest.fixture
def phantom(tmp_path) -> Path:
    path = tmp_path / "head.nrrd"
    sitk.WriteImage(tiny.head_phantom(), str(path))
    return path


def run_cli(*argv) -> int:
    return main(["predict", "--device", "cpu", *map(str, argv)])


def test_predict_writes_every_output_for_a_volume_smaller_than_a_patch(phantom, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(phantom, "--output", out) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["head.mrk.json", "head.probabilities.json", "head.probabilities.tsv", "head.seg.nrrd",
                     "head.summary.png", "head.volumes.tsv"]
    labels = sitk.ReadImage(str(out / "head.seg.nrrd"))
    assert labels.GetSize() == sitk.ReadImage(str(phantom)).GetSize()
    assert labels.GetMetaData("Segment0_Name") == "Left thalamus"
    assert len(json.loads((out / "head.mrk.json").read_text())["markups"][0]["controlPoints"]) == 3
    captured = capsys.readouterr()
    assert "UNTRAINED" in captured.err and "tiny-seg" in captured.err
    assert "head: segmentation, landmarks, classification in" in captured.out


def test_predict_runs_one_task_with_a_named_model_on_the_real_sample(tmp_path):
    from nnmamba.data import sample_volume_path

    out = tmp_path / "out"
    assert run_cli(sample_volume_path(), "--tasks", "classification", "--model", "classification=tiny-cls",
                   "--output", out, "--no-summary", "--tta") == 0
    result = json.loads((out / "sample_brain_mr.probabilities.json").read_text())
    assert set(result["probabilities"]) == {"CT", "MR"}
    assert sum(result["probabilities"].values()) == pytest.approx(1.0)


def test_predict_each_runs_every_volume_of_a_folder(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    for n in range(2):
        sitk.WriteImage(tiny.head_phantom(seed=n), str(folder / f"case{n}.nii.gz"))
    out = tmp_path / "out"
    assert run_cli(folder, "--each", "--tasks", "classification", "--output", out, "--no-summary") == 0
    assert sorted(p.name for p in out.glob("*.json")) == ["case0.probabilities.json", "case1.probabilities.json"]


# ---- bad inputs -------------------------------------------------------------------------------

def write_image(path: Path, array: np.ndarray, spacing=None, vector: bool = False) -> Path:
    image = sitk.GetImageFromArray(array, isVector=vector)
    if spacing is not None:
        image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


def zero_spacing_nrrd(path: Path) -> Path:
    header = ("NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\nsizes: 4 4 4\n"
              "space directions: (0,0,0) (0,1,0) (0,0,1)\nkinds: domain domain domain\nendian: little\n"
              "encoding: raw\nspace origin: (0,0,0)\n\n")
    path.write_bytes(header.encode() + struct.pack("<64f", *range(64)))
    return path


def put(path: Path, data) -> Path:
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


def head_array() -> np.ndarray:
    return sitk.GetArrayFromImage(tiny.head_phantom())


BAD_INPUTS = {
    "missing file": (lambda d: [d / "nope.nrrd"], "does not exist"),
    "zero-byte file": (lambda d: [put(d / "empty.nii.gz", b"")],
                       "could not be read as an image"),
    "corrupt file": (lambda d: [put(d / "bad.nrrd", b"NRRD0004\ngarbage\n")],
                     "could not be read as an image"),
    "not an image": (lambda d: [put(d / "notes.txt", "hello")],
                     "could not be read as an image"),
    "2-D image": (lambda d: [write_image(d / "slice.nrrd", np.random.rand(20, 30).astype(np.float32))],
                  "is a 2-D image"),
    "single-slice volume": (lambda d: [write_image(d / "one.nrrd", np.random.rand(1, 20, 30).astype(np.float32))],
                            "looks like a 2-D image"),
    "4-D image": (lambda d: [write_image(d / "series.nrrd", np.random.rand(3, 4, 5, 6).astype(np.float32))],
                  "is a 4-D image"),
    "colour image": (lambda d: [write_image(d / "rgb.nrrd", np.random.randint(0, 255, (4, 5, 6, 3)).astype(np.uint8),
                                            vector=True)], "3 components per voxel"),
    "constant volume": (lambda d: [write_image(d / "flat.nrrd", np.full((8, 9, 10), 7, np.int16))], "is constant"),
    "all-zero volume": (lambda d: [write_image(d / "zero.nrrd", np.zeros((8, 9, 10), np.float32))], "is constant"),
    "NaN voxels": (lambda d: [write_image(d / "nan.nrrd", np.where(head_array() > 250, np.nan, head_array()))],
                   "NaN or infinite"),
    "infinite voxels": (lambda d: [write_image(d / "inf.nrrd", np.where(head_array() > 250, np.inf, head_array()))],
                        "NaN or infinite"),
    "zero spacing": (lambda d: [zero_spacing_nrrd(d / "zero_spacing.nrrd")], "zero voxel spacing"),
    "absurd spacing": (lambda d: [write_image(d / "huge.nrrd", head_array(), spacing=(1000.0, 1000.0, 1000.0))],
                       "outside the plausible range"),
    "tiny spacing": (lambda d: [write_image(d / "micro.nrrd", head_array(), spacing=(1e-5, 1e-5, 1e-5))],
                     "outside the plausible range"),
    "wrong channel count": (lambda d: [write_image(d / "a.nrrd", head_array()), write_image(d / "b.nrrd", head_array())],
                            "expects 1 input channel"),
    "channels on different grids": (lambda d: [write_image(d / "a.nrrd", head_array()),
                                               write_image(d / "b.nrrd", head_array(), spacing=(2.0, 2.0, 2.0))],
                                    "not on the same voxel grid"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_with_a_clear_message_and_nothing_is_overwritten(case, tmp_path, capsys):
    make_inputs, message = BAD_INPUTS[case]
    inputs_dir = tmp_path / "inputs"
    inputs_dir.mkdir()
    inputs = make_inputs(inputs_dir)
    out = tmp_path / "out"
    out.mkdir()
    # The user's earlier result, under the name this run would write, with --overwrite given:
    # a refused input must still leave it untouched.
    earlier = out / "case.seg.nrrd"
    earlier.write_bytes(b"earlier result")
    rc = run_cli(*inputs, "--tasks", "segmentation", "--output", out, "--name", "case", "--overwrite")
    err = capsys.readouterr().err
    assert rc != 0
    assert message in err
    assert "error (bad_input)" in err and "Traceback" not in err
    assert earlier.read_bytes() == b"earlier result"
    assert sorted(p.name for p in out.iterdir()) == ["case.seg.nrrd"]


@pytest.mark.parametrize("argv,message,code", [
    (["--overlap", "1.2"], "overlap must be >= 0 and < 1, got 1.2", 2),
    (["--overlap", "-0.1"], "overlap must be >= 0 and < 1, got -0.1", 2),
    (["--tile-batch", "0"], "tile_batch must be 'auto' or an integer >= 1", 2),
    (["--model", "segmentation=no-such-model"], "no model named 'no-such-model'", 3),
    (["--model", "segmentaton=tiny-seg"], "--model must be NAME_OR_PATH or TASK=NAME_OR_PATH", 2),
    (["--model", "segmentation="], "--model must be NAME_OR_PATH or TASK=NAME_OR_PATH", 2),
    (["--model", "segmentation=tiny-landmarks"], "does landmarks, not segmentation", 3),
    (["--device", "cuda:7"], "cuda:7", 5),
])
def test_bad_arguments_are_refused_before_any_output(argv, message, code, phantom, tmp_path, capsys):
    if argv[:2] == ["--device", "cuda:7"]:
        import torch
        if torch.cuda.device_count() > 7:
            pytest.skip("this machine has a cuda:7")
    out = tmp_path / "out"
    rc = run_cli(phantom, "--tasks", "segmentation", "--output", out, *argv)
    err = capsys.readouterr().err
    assert rc == code, err
    assert message in err and "Traceback" not in err
    assert not out.exists() or not list(out.iterdir())


def test_a_broken_model_card_is_refused_with_its_path(phantom, tmp_path, capsys):
    card = tmp_path / "broken.json"
    card.write_text('{"schema_version": 1, "name": ')
    rc = run_cli(phantom, "--tasks", "segmentation", "--model", f"segmentation={card}", "--output", tmp_path / "o")
    err = capsys.readouterr().err
    assert rc == 3 and "is not valid JSON" in err and str(card) in err


def test_existing_outputs_are_kept_without_overwrite(phantom, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "head.probabilities.tsv").write_text("mine")
    rc = run_cli(phantom, "--tasks", "classification", "--output", out)
    err = capsys.readouterr().err
    assert rc == 4 and "output exists" in err and "--overwrite" in err
    assert (out / "head.probabilities.tsv").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["head.probabilities.tsv"]
    assert run_cli(phantom, "--tasks", "classification", "--output", out, "--overwrite") == 0
    assert (out / "head.probabilities.tsv").read_text().startswith("class\tprobability")


def test_the_installed_command_reports_a_bad_input_without_a_traceback(tmp_path, models_dir):
    env = dict(os.environ, NNMAMBA_MODELS_DIR=str(models_dir), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "nnmamba", "predict", str(tmp_path / "missing.nrrd"),
                           "--output", str(tmp_path / "out")], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_predict_takes_the_documented_input_tasks_model_and_tta_options(phantom, tmp_path):
    out = tmp_path / "out"
    rc = run_cli("--input", phantom, "--tasks", "segmentation,classification", "--model", "tiny-seg",
                 "--no-tta", "--no-summary", "--output", out)
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "head.probabilities.json", "head.probabilities.tsv", "head.seg.nrrd", "head.volumes.tsv"]


def test_a_bare_model_name_selects_its_own_task(phantom, tmp_path):
    out = tmp_path / "out"
    assert run_cli("-i", phantom, "--model", "tiny-landmarks", "--no-summary", "--output", out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["head.mrk.json"]


def test_an_input_folder_of_volume_files_is_a_batch_of_cases(phantom, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in ("a.nrrd", "b.nii.gz"):
        sitk.WriteImage(sitk.ReadImage(str(phantom)), str(folder / name))
    out = tmp_path / "out"
    assert run_cli("--input", folder, "--tasks", "classification", "--no-summary", "--output", out) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "a.probabilities.json", "a.probabilities.tsv", "b.probabilities.json", "b.probabilities.tsv"]


def test_predict_without_an_input_says_so(tmp_path, capsys):
    rc = run_cli("--output", tmp_path / "out")
    assert rc == 2
    assert "no input given" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["the output itself", "a parent folder"])
def test_an_output_that_is_an_existing_file_is_refused_before_computing_and_left_untouched(
        where, phantom, tmp_path, capsys):
    existing = tmp_path / "results.txt"
    existing.write_text("mine")
    out = existing if where == "the output itself" else existing / "out"
    rc = run_cli(phantom, "--tasks", "classification", "--output", out, "--overwrite")
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "--output must be a folder" in err and str(existing) in err and "Traceback" not in err
    assert existing.read_text() == "mine"


def test_predict_prints_the_seconds_of_every_stage(phantom, tmp_path, capsys):
    assert run_cli(phantom, "--tasks", "segmentation", "--output", tmp_path / "out", "--no-summary") == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("head: segmentation in"))
    for stage in ("read", "resample", "network", "postprocess", "write"):
        assert f"{stage} " in line and " s" in line, line
