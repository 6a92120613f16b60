"""VolumeConverter: volume nodes -> nnmamba Volume with exact geometry."""

from __future__ import annotations

import numpy as np
import pytest
import slicer

from nnmamba.errors import InputError
from NNMambaSlicerLib.VolumeConverter import VolumeConverter


def test_voxels_keep_their_kji_layout_and_ras_positions_on_an_oblique_grid(obliqueVolume):
    volume = VolumeConverter().toVolume([obliqueVolume])
    assert volume.array.shape == (1, 16, 20, 24)
    assert volume.array[0, 3, 5, 7] == 7 + 500 + 3000
    # the Volume's IJK-to-RAS is the node's, so every voxel stays at the same RAS point
    np.testing.assert_allclose(volume.geometry.ijk_to_ras_matrix(), _ijkToRas(obliqueVolume), atol=1e-9)


def test_extra_channel_volumes_are_stacked_after_the_first(obliqueVolume):
    second = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(obliqueVolume) * 2,
                                            ijkToRAS=_ijkToRas(obliqueVolume), name="T2")
    volume = VolumeConverter().toVolume([obliqueVolume, second])
    assert volume.array.shape == (2, 16, 20, 24)
    np.testing.assert_array_equal(volume.array[1], volume.array[0] * 2)


def test_informs_which_channel_is_off_grid_when_its_geometry_differs(obliqueVolume):
    shifted = _ijkToRas(obliqueVolume)
    shifted[0, 3] += 0.5
    second = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(obliqueVolume), ijkToRAS=shifted, name="T2")
    with pytest.raises(InputError, match="'T2' is not on the grid of 'Oblique head'"):
        VolumeConverter().toVolume([obliqueVolume, second])


def test_informs_when_channels_have_different_sizes(obliqueVolume):
    second = slicer.util.addVolumeFromArray(np.zeros((16, 20, 23), np.int16), ijkToRAS=_ijkToRas(obliqueVolume),
                                            name="small")
    with pytest.raises(InputError, match="all channels must share one grid"):
        VolumeConverter().toVolume([obliqueVolume, second])


def test_informs_when_no_volume_is_selected(app):
    with pytest.raises(InputError, match="no input volume selected"):
        VolumeConverter().toVolume([None])


def test_informs_when_the_node_has_no_voxels(app):
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError, match="'empty' has no voxels"):
        VolumeConverter().toVolume([node])


def test_vector_volume_components_become_channels(app):
    array = np.arange(4 * 5 * 6 * 3, dtype=np.float32).reshape(4, 5, 6, 3)
    node = slicer.util.addVolumeFromArray(array, nodeClassName="vtkMRMLVectorVolumeNode", name="rgb")
    volume = VolumeConverter().toVolume([node])
    assert volume.array.shape == (3, 4, 5, 6)
    np.testing.assert_array_equal(volume.array[2], array[..., 2])


def _ijkToRas(node) -> np.ndarray:
    import vtk
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def test_64_bit_integer_voxels_are_sent_as_float32(app):
    import vtk
    from vtk.util import numpy_support

    image = vtk.vtkImageData()
    image.SetDimensions(5, 4, 3)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(np.arange(60, dtype=np.int64), deep=True,
                                                               array_type=vtk.VTK_LONG_LONG))
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "long")
    node.SetAndObserveImageData(image)
    volume = VolumeConverter().toVolume([node])
    assert volume.array.dtype == np.float32 and volume.array[0, 2, 3, 4] == 59
