"""File input/output: volumes via SimpleITK, `.seg.nrrd`, markups JSON, probability tables, PNG.

torch-free. Every writer is atomic (temporary file + rename) and refuses to replace existing
files unless asked.
"""

from nnmamba.io.atomic import check_free, write_atomically
from nnmamba.io.checks import check_volume
from nnmamba.io.markups import markups_dict, write_markups
from nnmamba.io.outputs import output_paths, stem_of, write_results
from nnmamba.io.segmentation import segment_metadata, write_segmentation
from nnmamba.io.tables import write_probabilities_json, write_probabilities_tsv
from nnmamba.io.volumes import geometry_of, image_from_array, read_image, read_volume, write_volume

__all__ = [
    "check_free", "write_atomically", "check_volume", "markups_dict", "write_markups",
    "output_paths", "stem_of", "write_results", "segment_metadata", "write_segmentation",
    "write_probabilities_json", "write_probabilities_tsv", "geometry_of", "image_from_array",
    "read_image", "read_volume", "write_volume",
]
