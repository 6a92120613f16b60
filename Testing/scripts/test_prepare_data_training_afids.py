"""scripts/prepare_data.py's landmark ground truth per case: the AFIDs project's own points for a
template that has them (Colin27, moved by the recorded frame correction), 2009c's for the 2009c copies,
and no landmark training case is one the landmark task holds out. Reads the committed .fcsv files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

COLIN27_FCSV_SHA256 = "7e0b9df97d1e3e8a80d9fc8613e3042c67c88356a3ad4777f7fe554b9e6f2e09"


def test_the_colin27_points_are_the_afids_projects_file_unchanged(prepare_data):
    name, _ = prepare_data.TRAINING_AFIDS["colin27_t1"]
    data = (prepare_data.TRAINING_AFIDS_DIR / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == COLIN27_FCSV_SHA256


def test_colin27_gets_its_own_points_moved_superior_by_the_recorded_correction(prepare_data):
    from nnmamba.io.markups import read_fcsv

    template = np.zeros((32, 3))
    points = prepare_data.case_afids(Path("/nonexistent"), "colin27_t1", template)
    raw = read_fcsv(prepare_data.TRAINING_AFIDS_DIR / "tpl-Colin27_afids.fcsv")[0]
    assert points.shape == (32, 3)
    np.testing.assert_allclose(points - raw, np.tile([0.0, 0.0, 1.5], (32, 1)))
    # AC of Colin27 (RAS 0.55, 4.01, -5.86) in LPS, 1.5 mm superior
    np.testing.assert_allclose(points[0], [-0.547527528125, -4.007721875, -5.85731125 + 1.5])


def test_the_2009c_copies_share_the_2009c_points(prepare_data):
    template = np.arange(96, dtype=float).reshape(32, 3)
    for case in ("mni2009c_t1w", "mni2009c_t2w", "mni2009c_t1w_brain"):
        assert prepare_data.case_afids(Path("/nonexistent"), case, template) is template


def test_no_landmark_training_case_is_held_out_by_the_landmark_task(prepare_data):
    split = prepare_data.SPLITS["landmarks"]
    assert "colin27_t1" in split["train"]
    assert not set(split["train"]) & set(split["heldout"])
    assert set(prepare_data.TRAINING_AFIDS) <= set(split["train"])
