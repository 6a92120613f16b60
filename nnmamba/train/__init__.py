"""Training: prepared data, MONAI augmentation, losses, the loop (AMP, DDP, checkpoints).

Imports torch; the CLI imports it only for `nnmamba train`.
"""
