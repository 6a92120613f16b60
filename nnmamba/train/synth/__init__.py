"""Training data generated on the device from label maps (SynthSeg recipe) and augmentation of real
images, with labels and landmark points kept aligned. See generator.py."""

from nnmamba.train.synth.generator import (IGNORE_INDEX, ImageAugmenter, LabelMapGenerator, SynthBatch,
                                           SynthConfig)
from nnmamba.train.synth.spatial import SpatialConfig

__all__ = ["IGNORE_INDEX", "ImageAugmenter", "LabelMapGenerator", "SpatialConfig", "SynthBatch", "SynthConfig"]
