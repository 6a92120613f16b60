"""Training: prepared data, batches generated and augmented on the device (synth/), losses, the loop
(AMP, DDP, checkpoints).

Imports torch; the CLI imports it only for `nnmamba train`.
"""
