"""Evaluation of models on held-out data (see nnmamba.evaluate.heldout)."""
