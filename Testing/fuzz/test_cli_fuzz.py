"""Fuzz `nnmamba predict` as a user runs it (a real subprocess): folders of generated files with
names in any script or encoding, clashing stems, files named like our outputs, output folders
holding the user's earlier files or links, inside the input folder or not, with and without
`--overwrite` and `--each`. Invariants: a specific exit code and one error line (never a traceback
or a signal); nothing of the user's changed unless `--overwrite` replaced a planned output; no
temporary file left; on success every case's outputs exist and are readable."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys

import SimpleITK as sitk
from hypothesis import event, example, given, note, settings
from hypothesis import strategies as st

from conftest import REPO, child_env, examples
from hostile_files import file_stems, nifti_files, nrrd_files

SPECIFIC_EXIT_CODES = {0: "ok", 2: "bad_input", 4: "output_exists"}
_runs = itertools.count()


@st.composite
def input_files(draw) -> list:
    """(name bytes, content bytes or None for a good phantom) for one to three input files."""
    files = []
    for _ in range(draw(st.integers(1, 3))):
        suffix = draw(st.sampled_from([b".nrrd", b".nii", b".nii.gz", b".seg.nrrd"]))
        stem = draw(st.one_of(file_stems(), st.sampled_from([b"case", b"Case", b"a"])))
        content = None
        if draw(st.integers(0, 2)) == 0:
            content = draw(nifti_files()) if suffix.startswith(b".nii") else draw(nrrd_files())
            if suffix == b".nii.gz":
                import gzip

                content = gzip.compress(content)
        files.append((stem + suffix, content))
    return files


@st.composite
def runs(draw) -> dict:
    return {
        "files": draw(input_files()),
        "output": draw(st.sampled_from(["beside", "beside", "inside input", "non-utf8 name"])),
        "earlier": draw(st.sampled_from(["nothing", "a planned output", "a dangling link", "an unrelated file"])),
        "overwrite": draw(st.booleans()),
        "each": draw(st.booleans()),
        "allow_inside": draw(st.booleans()),
        "tasks": draw(st.sampled_from(["classification", "classification", "segmentation"])),
        "summary": draw(st.integers(0, 3)) == 0,    # the PNG costs seconds per run: now and then
    }


def snapshot(folder: bytes) -> dict:
    """relative path -> ("link", target) or ("file", bytes) for everything under `folder`."""
    found = {}
    for parent, dirs, files in os.walk(folder):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(parent, d))]:
            path = os.path.join(parent, name)
            key = os.path.relpath(path, folder)
            if os.path.islink(path):
                found[key] = ("link", os.readlink(path))
            else:
                with open(path, "rb") as f:
                    found[key] = ("file", f.read())
    return found


def make_run(scenario: dict, root: bytes) -> tuple:
    """Write the scenario's files under `root`; returns (argv, input folder, output folder)."""
    scans = os.path.join(root, b"scans")
    os.makedirs(scans)
    for n, (name, content) in enumerate(scenario["files"]):
        path = os.path.join(scans, name)
        if os.path.lexists(path):
            continue
        if content is None:        # a good phantom, written under a plain name then renamed
            plain = os.path.join(root, b"plain-%d" % n + name[name.index(b"."):])
            from tiny_models import head_phantom

            sitk.WriteImage(head_phantom(seed=n), os.fsdecode(plain))
            os.rename(plain, path)
        else:
            with open(path, "wb") as f:
                f.write(content)
    output = {"beside": os.path.join(root, b"out"), "inside input": os.path.join(scans, b"out"),
              "non-utf8 name": os.path.join(root, b"out-\xe9")}[scenario["output"]]
    os.makedirs(output, exist_ok=True)
    first_stem = scenario["files"][0][0].split(b".")[0]
    earlier = {"a planned output": first_stem + b".probabilities.json", "a dangling link": first_stem + b".seg.nrrd",
               "an unrelated file": b"notes.txt"}.get(scenario["earlier"])
    if scenario["earlier"] == "a dangling link":
        os.symlink(os.path.join(root, b"nowhere"), os.path.join(output, earlier))
    elif earlier is not None:
        with open(os.path.join(output, earlier), "wb") as f:
            f.write(b"the user's earlier file")
    argv = [os.fsdecode(scans), "-o", os.fsdecode(output), "--tasks", scenario["tasks"], "--device", "cpu"]
    argv += ["--overwrite"] * scenario["overwrite"] + ["--each"] * scenario["each"]
    argv += ["--allow-output-in-input"] * scenario["allow_inside"] + ["--no-summary"] * (not scenario["summary"])
    return argv, scans, output


# Each example starts the real command (torch import, model load): a few seconds on an idle 2-core
# machine, so few examples; the `deep` profile runs more.
@settings(max_examples=examples(6))
@given(scenario=runs())
@example(scenario={"files": [(b"head.nrrd", None), (b"caf\xc3\xa9 \xe2\x84\x96 1.nii.gz", None)], "output": "beside",
                   "earlier": "an unrelated file", "overwrite": False, "each": False, "allow_inside": False,
                   "tasks": "classification", "summary": False})       # a plain success, UTF-8 names
@example(scenario={"files": [(b"a.nrrd", None), (b"a.nii.gz", None)], "output": "beside",
                   "earlier": "a planned output", "overwrite": True, "each": False, "allow_inside": False,
                   "tasks": "classification", "summary": False})       # issue 22 item 2
def test_predict_on_hostile_folders_exits_with_a_specific_code_and_keeps_the_users_files(
        fuzz_models_dir, tmp_path_factory, scenario):
    root = os.fsencode(tmp_path_factory.mktemp(f"cli-fuzz-{next(_runs)}"))
    argv, scans, output = make_run(scenario, root)
    before = snapshot(root)
    proc = subprocess.run([sys.executable, "-m", "nnmamba", "predict", *argv], capture_output=True, cwd=REPO,
                          env=child_env(NNMAMBA_MODELS_DIR=str(fuzz_models_dir)), timeout=300)
    err = proc.stderr.decode("utf-8", "replace")
    note(f"exit {proc.returncode}\nstderr: {err[-3000:]}\nstdout: {proc.stdout.decode('utf-8', 'replace')[-2000:]}")
    after = snapshot(root)
    event(f"exit {proc.returncode}")

    assert proc.returncode in SPECIFIC_EXIT_CODES, f"exit {proc.returncode} (a signal is negative)"
    assert "Traceback" not in err
    if proc.returncode:
        assert f"nnmamba: error ({SPECIFIC_EXIT_CODES[proc.returncode]})" in err
    assert not [k for k in after if b".tmp-" in os.path.basename(k)], "a temporary file was left"
    changed = {k for k in before if after.get(k) != before[k]}
    new = set(after) - set(before)
    if proc.returncode:
        assert not changed and not new, "a refused run changed files"
        return
    replaced_outputs = {k for k in changed if b".probabilities." in k or k.endswith((b".seg.nrrd", b".summary.png"))}
    assert changed == (replaced_outputs if scenario["overwrite"] else set()), changed
    assert not any(k.startswith(b"scans/") and not k.startswith(b"scans/out/") for k in changed | new)
    written = [k for k in new | changed if k.endswith(b".probabilities.json")]
    for key in written:
        result = json.loads(after[key][1])
        assert math.isclose(sum(result["probabilities"].values()), 1.0, abs_tol=1e-4)
