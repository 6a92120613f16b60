"""Reading volumes: files, channels, DICOM series folders, and the checks on what is read."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from nnmamba.errors import InputError
from nnmamba.io import read_volume


def write(tmp_path, name, array, spacing=(1.0, 1.5, 2.0), origin=(3.0, -4.0, 5.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    path = tmp_path / name
    sitk.WriteImage(image, str(path))
    return path


def ramp(shape=(5, 6, 7)):
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


def test_one_file_becomes_one_channel_with_its_geometry(tmp_path):
    vol = read_volume(write(tmp_path, "a.nii.gz", ramp()))
    assert vol.array.shape == (1, 5, 6, 7) and vol.array.dtype == np.float32
    np.testing.assert_allclose(vol.geometry.spacing, [1.0, 1.5, 2.0])
    np.testing.assert_allclose(vol.geometry.origin, [3.0, -4.0, 5.0])


def test_several_files_become_channels_in_the_given_order(tmp_path):
    a = write(tmp_path, "a.nrrd", ramp())
    b = write(tmp_path, "b.nrrd", -ramp())
    vol = read_volume([b, a], expected_channels=2)
    np.testing.assert_array_equal(vol.array[0], -ramp())
    np.testing.assert_array_equal(vol.array[1], ramp())


def test_channels_on_different_grids_are_refused(tmp_path):
    a = write(tmp_path, "a.nrrd", ramp())
    b = write(tmp_path, "b.nrrd", ramp(), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="not on the same voxel grid"):
        read_volume([a, b])


def test_a_dicom_series_folder_is_read_as_one_volume(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    array = (ramp((4, 6, 7)) * 10).astype(np.int16)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(array.shape[0]):
        s = sitk.GetImageFromArray(array[k])
        s.SetSpacing((0.8, 0.9))
        s.SetMetaData("0008|0060", "MR")
        s.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.1.999")
        s.SetMetaData("0020|000d", "1.2.826.0.1.3680043.2.1125.1.998")
        s.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
        s.SetMetaData("0020|0032", f"10\\20\\{30 + 2.5 * k}")
        s.SetMetaData("0020|0013", str(k + 1))
        s.SetMetaData("0028|0030", "0.9\\0.8")
        s.SetMetaData("0018|0050", "2.5")
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(s)
    vol = read_volume(folder)
    assert vol.array.shape == (1, 4, 6, 7)
    np.testing.assert_array_equal(vol.array[0], array)
    np.testing.assert_allclose(vol.geometry.spacing, [0.8, 0.9, 2.5], atol=1e-4)
    np.testing.assert_allclose(vol.geometry.origin, [10, 20, 30], atol=1e-4)


def test_a_folder_without_dicom_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="without a DICOM series"):
        read_volume(tmp_path)
