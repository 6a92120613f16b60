"""File input/output: volumes via SimpleITK, `.seg.nrrd`, markups JSON, probability tables, PNG.

torch-free. Every writer is atomic (temporary file + rename) and refuses to replace existing
files unless asked.

Names are imported from their submodule on first use, so `nnmamba.io.atomic` (used when saving
models) does not pull in SimpleITK and matplotlib.
"""

from __future__ import annotations

import importlib

_SUBMODULE_OF = {
    "check_free": "atomic", "write_atomically": "atomic",
    "check_volume": "checks",
    "markups_dict": "markups", "write_markups": "markups",
    "is_output_file": "outputs", "output_paths": "outputs", "stem_of": "outputs",
    "write_results": "outputs",
    "check_output_outside_inputs": "output_plan", "plan_outputs": "output_plan",
    "check_encodable_path": "paths",
    "segment_metadata": "segmentation", "write_segmentation": "segmentation",
    "write_probabilities_json": "tables", "write_probabilities_tsv": "tables",
    "geometry_of": "volumes", "image_from_array": "volumes", "read_image": "volumes",
    "read_volume": "volumes", "write_volume": "volumes",
}
__all__ = list(_SUBMODULE_OF)


def __getattr__(name: str):
    submodule = _SUBMODULE_OF.get(name)
    if submodule is None:
        raise AttributeError(f"module 'nnmamba.io' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"nnmamba.io.{submodule}"), name)
    globals()[name] = value
    return value
