"""Volumes in and out of files with SimpleITK: NRRD, NIfTI, MHA, ... or a DICOM series folder.

Example:
    >>> vol = read_volume(["t1.nii.gz"])          # doctest: +SKIP
    >>> vol.array.shape                            # doctest: +SKIP
    (1, 176, 256, 256)
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk

from nnmamba.errors import InputError
from nnmamba.io.checks import check_volume
from nnmamba.io.claimed_size import check_claim_fits_file, check_claimed_size
from nnmamba.io.nifti_header import check_nifti_header
from nnmamba.io.paths import check_encodable_path, check_encodable_paths
from nnmamba.volume import Geometry, Volume

PathLike = Union[str, Path]


def geometry_of(image: sitk.Image) -> Geometry:
    return Geometry(np.array(image.GetOrigin()), np.array(image.GetSpacing()),
                    np.array(image.GetDirection()).reshape(3, 3))


def apply_geometry(image: sitk.Image, geometry: Geometry) -> sitk.Image:
    image.SetOrigin(tuple(float(v) for v in geometry.origin))
    image.SetSpacing(tuple(float(v) for v in geometry.spacing))
    image.SetDirection(tuple(float(v) for v in geometry.direction.reshape(-1)))
    return image


def image_from_array(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    """A 3-D SimpleITK image from a [k, j, i] array."""
    return apply_geometry(sitk.GetImageFromArray(np.ascontiguousarray(array)), geometry)


def _read_dicom_folder(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(f"{folder} is a folder without a DICOM series; give an image file or a folder "
                         f"holding one DICOM series")
    if len(series) > 1:
        raise InputError(f"{folder} holds {len(series)} DICOM series ({', '.join(series[:4])}...); "
                         f"put each series in its own folder and give one")
    files = reader.GetGDCMSeriesFileNames(str(folder), series[0])
    check_encodable_paths(files, "DICOM file")
    first = _header_of(files[0])
    check_claimed_size(first.GetSize()[:2] + (len(files),), _bytes_per_component(first),
                       first.GetNumberOfComponents(), str(folder))
    reader.SetFileNames(files)
    return reader.Execute()


def _header_of(path: str) -> sitk.ImageFileReader:
    """A reader that has read only the header of `path` (size, pixel type), not its voxels."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    return reader


def _bytes_per_component(reader: sitk.ImageFileReader) -> int:
    """Bytes of one pixel component of the image `reader` describes (8 if the type is unusual)."""
    try:
        probe = sitk.Image([1] * max(reader.GetDimension(), 2), reader.GetPixelID(),
                           max(reader.GetNumberOfComponents(), 1))
        return sitk.GetArrayViewFromImage(probe).itemsize
    except (RuntimeError, ValueError, TypeError):
        return 8


def _read_file(path: Path) -> sitk.Image:
    """One image file, refused before its voxels are read if its header claims too many."""
    check_nifti_header(str(path))   # ITK hangs on some NIfTI headers: checked before it reads them
    reader = _header_of(str(path))
    size, pixel_bytes, components = reader.GetSize(), _bytes_per_component(reader), reader.GetNumberOfComponents()
    check_scalar_3d(path, reader.GetDimension(), size, components)   # before reading what is refused
    check_claimed_size(size, pixel_bytes, components, str(path))
    check_claim_fits_file(str(path), size, pixel_bytes, components)
    return reader.Execute()


def read_image(path: PathLike) -> sitk.Image:
    """One 3-D scalar image; `InputError` for anything else."""
    path = Path(path)
    check_encodable_path(path, "input")   # before any C++ call: such a name aborts the process
    if not path.exists():
        raise InputError(f"input {path} does not exist; check the path")
    try:
        image = _read_dicom_folder(path) if path.is_dir() else _read_file(path)
    except RuntimeError as e:
        # SimpleITK reports unreadable/unknown files as RuntimeError with ITK's long text.
        first = str(e).strip().splitlines()[-1] if str(e).strip() else "unknown reason"
        if "zero-valued spacing" in str(e).lower():
            raise InputError(f"input {path}: the header gives a zero voxel spacing ({first}); voxel "
                             f"spacing must be positive: fix the image header") from e
        raise InputError(f"input {path} could not be read as an image ({first}); give a NRRD, NIfTI, "
                         f"MHA or DICOM series folder") from e
    check_scalar_3d(path, image.GetDimension(), image.GetSize(), image.GetNumberOfComponentsPerPixel())
    return image


def check_scalar_3d(path, dimension: int, size, components: int) -> None:
    """`InputError` unless the image (as its header or its voxels describe it) is 3-D and scalar."""
    if dimension == 2:
        raise InputError(f"input {path} is a 2-D image {size}; give a 3-D volume")
    if dimension != 3:
        raise InputError(f"input {path} is a {dimension}-D image {size} (a time series or stacked "
                         f"channels); give one 3-D volume per channel")
    if components != 1:
        raise InputError(f"input {path} has {components} components per voxel "
                         f"(a colour or vector image); give a scalar 3-D volume per channel")


def read_volume(paths: Union[PathLike, Sequence[PathLike]],
                expected_channels: Optional[int] = None) -> Volume:
    """Read one file/folder per channel into a checked `Volume` ([c, k, j, i] float32).

    All channels must share one voxel grid (the first file's); `expected_channels` is the model's.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError("no input volume given")
    if expected_channels is not None and len(paths) != expected_channels:
        raise InputError(f"the model expects {expected_channels} input channel(s) (one file each), "
                         f"got {len(paths)} file(s): {', '.join(map(str, paths))}")
    images = [read_image(p) for p in paths]
    reference = images[0]
    geometry = geometry_of(reference)
    for path, image in zip(paths[1:], images[1:]):
        other = geometry_of(image)
        same = (image.GetSize() == reference.GetSize()
                and np.allclose(other.origin, geometry.origin, atol=1e-3)
                and np.allclose(other.spacing, geometry.spacing, rtol=1e-5)
                and np.allclose(other.direction, geometry.direction, atol=1e-5))
        if not same:
            raise InputError(f"channel {path} is not on the same voxel grid as {paths[0]} "
                             f"(size {image.GetSize()} vs {reference.GetSize()}, spacing "
                             f"{image.GetSpacing()} vs {reference.GetSpacing()}); resample the channels "
                             f"onto one grid first")
    arrays = [sitk.GetArrayViewFromImage(im) for im in images]
    array = np.stack([np.asarray(a, dtype=np.float32) for a in arrays])
    volume = Volume(array, geometry)
    check_volume(volume, source=str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1})")
    return volume


def write_volume(volume: Volume, path: PathLike) -> None:
    """Write a single-channel volume (tests and tools; outputs go through `nnmamba.io.outputs`)."""
    array = volume.array[0] if volume.array.ndim == 4 else volume.array
    sitk.WriteImage(image_from_array(array, volume.geometry), str(path), useCompression=True)
