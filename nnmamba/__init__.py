"""nnMamba engine: networks, scan backends, inference, I/O and the worker.

Importing the package (and `nnmamba.worker.client`) must not import torch: the Slicer module
uses the client from Slicer's own Python, which may have no torch at all.
"""

__version__ = "0.1.0"
