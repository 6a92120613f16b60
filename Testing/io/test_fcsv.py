"""Slicer's markups CSV (.fcsv) reads into LPS points with each row's columns; the packaged AFIDs
template is one such file."""

import numpy as np
import pytest

from nnmamba.data import afids_template_path
from nnmamba.io.markups import read_fcsv


def test_the_packaged_afids_template_reads_as_32_lps_points_named_in_their_rows():
    points, rows = read_fcsv(afids_template_path())
    assert points.shape == (32, 3) and len(rows) == 32
    assert rows[0]["desc"] == "AC" and rows[1]["desc"] == "PC"
    # the file is RAS: AC at R -0.231, A 2.93, S -4.90 -> LPS (0.231, -2.93, -4.90)
    np.testing.assert_allclose(points[0], [0.231, -2.93275, -4.899])


def test_an_lps_file_keeps_its_signs_and_a_file_without_numbers_is_refused(tmp_path):
    lps = tmp_path / "lps.fcsv"
    lps.write_text("# CoordinateSystem = LPS\n# columns = id,x,y,z,label\np1,1,2,3,first\n")
    points, rows = read_fcsv(lps)
    np.testing.assert_array_equal(points, [[1.0, 2.0, 3.0]])
    assert rows[0]["label"] == "first"
    broken = tmp_path / "broken.fcsv"
    broken.write_text("# columns = id,x,y,z\np1,one,2,3\n")
    with pytest.raises(ValueError, match="numeric x, y, z"):
        read_fcsv(broken)
