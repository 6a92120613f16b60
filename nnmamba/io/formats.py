"""File name endings of the volume formats `read_volume` reads (SimpleITK), shared by whoever names
or finds volume files (`stem_of`, `nnmamba predict` on a folder). A DICOM series is a folder."""

IMAGE_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
DICOM_SUFFIX = ".dcm"
