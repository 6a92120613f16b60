"""Cohort inference (`nnmamba predict` under torchrun or with --resume): balanced shares, every
case done once, failures recorded, existing outputs refused, and a killed run resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import SimpleITK as sitk

from nnmamba.cli import main
from nnmamba.commands.cohort import (MARKER_DIR, SUMMARY_NAME, Case, balanced_shares, is_finished,
                                     marker_path)

import tiny_models as tiny  # on the path through conftest.py

REPO = Path(__file__).resolve().parent.parent.parent
pytestmark = pytest.mark.usefixtures("use_tiny_models")  # conftest.py


@pytest.fixture(autouse=True)
def single_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def write_cases(folder: Path, count: int, size: int = 16) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        image = tiny.head_phantom(shape_kji=(size + 2 * (n % 3), size, size), spacing=(4.0, 4.0, 4.0), seed=n)
        sitk.WriteImage(image, str(folder / f"case{n:02d}.nrrd"))
    return [f"case{n:02d}" for n in range(count)]


def read_summary(out: Path) -> list:
    lines = (out / SUMMARY_NAME).read_text().splitlines()
    assert lines[0].split("\t") == ["case", "rank", "seconds", "status", "error"]
    return [dict(zip(lines[0].split("\t"), line.split("\t"))) for line in lines[1:]]


def predict(*argv) -> int:
    return main(["predict", "--device", "cpu", "--tasks", "segmentation", "--no-summary", *map(str, argv)])


def test_balanced_shares_give_each_case_to_exactly_one_rank_and_even_out_the_sizes():
    sizes = [5, 1, 4, 2, 3]
    assert balanced_shares(sizes, 2) == [[0, 3, 1], [2, 4]]
    sizes = [(n * 7919) % 101 + 1 for n in range(40)]
    shares = balanced_shares(sizes, 4)
    assert sorted(i for share in shares for i in share) == list(range(40))
    loads = [sum(sizes[i] for i in share) for share in shares]
    assert max(loads) - min(loads) <= max(sizes)
    assert balanced_shares(sizes, 4) == shares
    assert balanced_shares([], 3) == [[], [], []]
    with pytest.raises(ValueError, match="world_size must be >= 1, got 0"):
        balanced_shares(sizes, 0)


def test_a_case_is_finished_only_when_its_marker_lists_this_runs_outputs_and_all_exist(tmp_path):
    assert not is_finished(tmp_path, "a", ["a.seg.nrrd"])
    marker_path(tmp_path, "a").parent.mkdir()
    marker_path(tmp_path, "a").write_text(json.dumps({"outputs": ["a.seg.nrrd"]}))
    assert not is_finished(tmp_path, "a", ["a.seg.nrrd"])           # the output is missing
    (tmp_path / "a.seg.nrrd").write_bytes(b"x")
    assert is_finished(tmp_path, "a", ["a.seg.nrrd"])
    assert not is_finished(tmp_path, "a", ["a.seg.nrrd", "a.mrk.json"])  # another task asked for now
    marker_path(tmp_path, "a").write_text(json.dumps({"outputs": ["a.seg.nrrd"], "inputs": ["scans/a.nrrd"],
                                                      "input_bytes": 1000}))
    assert is_finished(tmp_path, "a", ["a.seg.nrrd"], Case("a", ("scans/a.nrrd",), 1000))
    assert not is_finished(tmp_path, "a", ["a.seg.nrrd"], Case("a", ("scans/a.nrrd",), 1001))  # replaced
    assert not is_finished(tmp_path, "a", ["a.seg.nrrd"], Case("a", ("other/a.nrrd",), 1000))
    marker_path(tmp_path, "a").write_text("{truncated")
    assert not is_finished(tmp_path, "a", ["a.seg.nrrd"])


def test_resume_in_one_process_skips_finished_cases_and_redoes_the_others(tmp_path):
    stems = write_cases(tmp_path / "scans", 3)
    out = tmp_path / "out"
    assert predict("-i", tmp_path / "scans", "-o", out, "--resume") == 0
    assert {row["case"]: row["status"] for row in read_summary(out)} == dict.fromkeys(stems, "done")
    marker_path(out, stems[1]).unlink()  # as if the run had stopped before this case's marker
    kept = (out / f"{stems[0]}.seg.nrrd").stat().st_mtime_ns
    assert predict("-i", tmp_path / "scans", "-o", out, "--resume") == 0
    assert {row["case"]: row["status"] for row in read_summary(out)} == \
        {stems[0]: "skipped", stems[1]: "done", stems[2]: "skipped"}
    assert (out / f"{stems[0]}.seg.nrrd").stat().st_mtime_ns == kept


def test_without_resume_a_cohort_refuses_existing_outputs_before_running_anything(tmp_path, monkeypatch, capsys):
    stems = write_cases(tmp_path / "scans", 2)
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{stems[1]}.seg.nrrd").write_bytes(b"the user's file")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")  # what torchrun --nproc_per_node 1 sets
    assert predict("-i", tmp_path / "scans", "-o", out) == 4
    assert "output exists" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [f"{stems[1]}.seg.nrrd"]
    assert (out / f"{stems[1]}.seg.nrrd").read_bytes() == b"the user's file"


def test_a_failed_case_is_recorded_and_the_others_still_run(tmp_path):
    stems = write_cases(tmp_path / "scans", 2)
    (tmp_path / "scans" / "broken.nrrd").write_bytes(b"NRRD0004\nthis is not a volume\n")
    out = tmp_path / "out"
    assert predict("-i", tmp_path / "scans", "-o", out, "--resume") == 1
    rows = {row["case"]: row for row in read_summary(out)}
    assert {case: row["status"] for case, row in rows.items()} == \
        {"broken": "failed", stems[0]: "done", stems[1]: "done"}
    assert rows["broken"]["error"]
    assert not marker_path(out, "broken").exists()


def finished_cases(out: Path) -> set:
    """Cases with a marker (not the hidden temporary file of a marker being written)."""
    folder = out / MARKER_DIR
    markers = folder.glob("*.done.json") if folder.is_dir() else []
    return {p.name.removesuffix(".done.json") for p in markers if not p.name.startswith(".")}


def _children(pid: int) -> list:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _rank_process(launcher: int, rank: int) -> int | None:
    """The pid of torchrun worker `rank` among the descendants of `launcher`."""
    pending = _children(launcher)
    while pending:
        pid = pending.pop()
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ and b"WORLD_SIZE=2" in environ:
            return pid
        pending += _children(pid)
    return None


def _torchrun(scans: Path, out: Path, *extra) -> list:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "nnmamba", "predict", "-i", str(scans), "-o", str(out), "--tasks", "segmentation",
            "--device", "cpu", "--no-summary", *extra]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finding a rank's pid needs Linux /proc")
def test_two_gloo_processes_do_every_case_once_and_resume_finishes_only_what_a_killed_rank_left(
        tmp_path, models_dir):
    stems = write_cases(tmp_path / "scans", 10, size=40)  # ~0.2 s a case: time to kill mid-run
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), NNMAMBA_MODELS_DIR=str(models_dir))
    launcher = subprocess.Popen(_torchrun(tmp_path / "scans", out), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        victim = None
        while victim is None and launcher.poll() is None and time.monotonic() < deadline:
            markers = [json.loads(marker_path(out, stem).read_text()) for stem in finished_cases(out)]
            if any(marker["rank"] == 1 for marker in markers):
                victim = _rank_process(launcher.pid, 1)
                os.kill(victim, signal.SIGKILL)  # a real kill of the real rank-1 process
            time.sleep(0.01)
        log = launcher.communicate(timeout=60)[0]
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert victim is not None, f"rank 1 never finished a case before the run ended:\n{log[-3000:]}"
    assert launcher.returncode != 0, log[-3000:]
    assert not (out / SUMMARY_NAME).exists()
    finished = finished_cases(out)
    assert finished and finished < set(stems), finished
    assert all(is_finished(out, stem, [f"{stem}.seg.nrrd", f"{stem}.volumes.tsv"]) for stem in finished)
    written = {stem: (out / f"{stem}.seg.nrrd").stat().st_mtime_ns for stem in finished}

    done = subprocess.run(_torchrun(tmp_path / "scans", out, "--resume"), env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_summary(out)
    assert sorted(row["case"] for row in rows) == stems  # every case exactly once
    assert {row["case"] for row in rows if row["status"] == "skipped"} == finished
    redone = [row for row in rows if row["status"] == "done"]
    assert {row["case"] for row in redone} == set(stems) - finished
    assert {row["rank"] for row in redone} == {"0", "1"} or len(redone) == 1
    assert {stem: (out / f"{stem}.seg.nrrd").stat().st_mtime_ns for stem in finished} == written
    assert all(is_finished(out, stem, [f"{stem}.seg.nrrd", f"{stem}.volumes.tsv"]) for stem in stems)
    assert not list(out.glob(".*tmp-*")) and not list((out / MARKER_DIR).glob(".*tmp-*")), \
        "a temporary file was left behind"
