"""Volume nodes -> `nnmamba.volume.Volume` (voxels [c, k, j, i] + LPS geometry), checked."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import vtk
from vtk.util import numpy_support

from nnmamba.errors import InputError
from nnmamba.volume import Geometry, Volume

# Geometry of extra channels must match the first input to this many mm (or radians, for directions).
GEOMETRY_TOLERANCE = 1e-4


class VolumeConverter:
    """Reads one or several (same-grid) scalar/vector volume nodes into a `Volume`.

    The node's own IJK-to-RAS is used (not its parent transform): outputs are placed under the
    input's parent transform, so they stay on the input's voxels whatever the transform does.

    Example:
        >>> volume = VolumeConverter().toVolume([volumeNode])
        >>> volume.array.shape        # (1, k, j, i)
    """

    def toVolume(self, volumeNodes: Sequence) -> Volume:
        if not volumeNodes or volumeNodes[0] is None:
            raise InputError("no input volume selected: choose a volume in the Input volume box.")
        arrays, geometries = [], []
        for node in volumeNodes:
            array, geometry = self._readNode(node)
            arrays.append(array)
            geometries.append(geometry)
        first = volumeNodes[0]
        for node, array, geometry in zip(volumeNodes[1:], arrays[1:], geometries[1:]):
            self._checkSameGrid(first, arrays[0], geometries[0], node, array, geometry)
        return Volume(np.concatenate(arrays, axis=0), geometries[0])

    @staticmethod
    def geometryOf(volumeNode) -> Geometry:
        matrix = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(matrix)
        return Geometry.from_ijk_to_ras_matrix(np.array([[matrix.GetElement(r, c) for c in range(4)]
                                                         for r in range(4)]))

    def _readNode(self, node) -> tuple:
        isVolume = node is not None and (node.IsA("vtkMRMLScalarVolumeNode") or node.IsA("vtkMRMLVectorVolumeNode"))
        if not isVolume:
            kind = node.GetClassName() if node is not None else "nothing"
            raise InputError(f"the input must be a scalar or vector volume node, got {kind}.")
        image = node.GetImageData()
        if image is None or image.GetNumberOfPoints() == 0:
            raise InputError(f"volume '{node.GetName()}' has no voxels: load its image data first.")
        dims = image.GetDimensions()
        components = image.GetNumberOfScalarComponents()
        scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
        # VTK stores i fastest: a C-order reshape to (k, j, i, c) is the voxel grid.
        array = np.array(scalars, copy=True).reshape(dims[2], dims[1], dims[0], components)
        array = np.moveaxis(array, -1, 0)
        if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
            raise InputError(f"volume '{node.GetName()}' has non-numeric voxels ({array.dtype}).")
        if array.dtype.itemsize == 8 and np.issubdtype(array.dtype, np.integer):
            array = array.astype(np.float32)  # the worker protocol carries no 64-bit integer volumes
        return array, self.geometryOf(node)

    @staticmethod
    def _checkSameGrid(firstNode, firstArray, firstGeometry, node, array, geometry) -> None:
        if array.shape[1:] != firstArray.shape[1:]:
            raise InputError(f"channel volume '{node.GetName()}' has {array.shape[1:][::-1]} voxels (i, j, k) "
                             f"but '{firstNode.GetName()}' has {firstArray.shape[1:][::-1]}: all channels must "
                             "share one grid; resample it onto the first volume (Resample Scalar/Vector/DWI Volume).")
        difference = max(np.abs(geometry.origin - firstGeometry.origin).max(),
                         np.abs(geometry.spacing - firstGeometry.spacing).max(),
                         np.abs(geometry.direction - firstGeometry.direction).max())
        if difference > GEOMETRY_TOLERANCE:
            raise InputError(f"channel volume '{node.GetName()}' is not on the grid of '{firstNode.GetName()}' "
                             f"(origin/spacing/direction differ by up to {difference:.3g}): resample it onto the "
                             "first volume first.")
