"""Inference: preprocessing onto a model's grid, sliding window, TTA, postprocessing.

`InferenceOptions` is torch-free; `Predictor` (torch) is imported on first use so that
`from nnmamba.inference import InferenceOptions` works without torch.
"""

from nnmamba.inference.options import InferenceOptions

__all__ = ["InferenceOptions", "Predictor"]


def __getattr__(name):
    if name == "Predictor":
        from nnmamba.inference.predictor import Predictor
        return Predictor
    raise AttributeError(f"module 'nnmamba.inference' has no attribute {name!r}")
