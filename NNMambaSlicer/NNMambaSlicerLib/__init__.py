"""Library of the NNMambaSlicer module: one class per file.

Nothing here imports torch. Only `Widget`, `InstallLogic` and `ServerSettings` touch `qt`/`slicer.app`
(lazily or in their own file), so the MRML logic runs on plain slicer-core MRML, as the tests do.
"""
