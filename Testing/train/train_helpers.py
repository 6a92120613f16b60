"""Helpers shared by the training tests."""

SPACING = 8.0


def tiny_card(name: str = "tiny-head-seg") -> dict:
    return {"schema_version": 1, "name": name, "task": "segmentation", "network": "nnMambaSeg",
            "hyperparameters": {"in_ch": 1, "channels": 4, "blocks": 2, "number_classes": 2},
            "weights": "weights.safetensors", "trained": False,
            "input": {"channels": [{"name": "MR", "modality": "MR"}], "spacing_mm": [SPACING] * 3,
                      "orientation": "LPS", "patch_size": [32, 32, 32],
                      "normalization": {"method": "zscore", "mask": "nonzero"}},
            "inference": {"mirror_axes": [1, 2]},
            "labels": [{"value": 1, "name": "Head", "color": [0.9, 0.7, 0.6]}]}
