"""Label tables of the generator: FreeSurfer label codes -> tissue (for contrast priors and CT
Hounsfield ranges), their left/right pairs (label swap under a mirror), and the AFIDs left/right
point pairs (point swap under a mirror).

All training label maps are converted to FreeSurfer's aseg/aparc codes when they are prepared
(scripts/prepare_data.py), so one table serves every source. Codes 900-904 are ours: the brain
interior that a source leaves unlabelled, and the head layers `head.add_head_layers` draws around a
brain-only map.
"""

from __future__ import annotations

from nnmamba.mirroring import swap_order

TISSUES = ("background", "csf", "grey", "white", "deep_grey", "bone", "fat", "soft", "vessel")

UNLABELLED_BRAIN, EXTRACEREBRAL_CSF, SKULL, SCALP_FAT, SCALP = 900, 901, 902, 903, 904

_ASEG_TISSUE = {
    0: "background", 2: "white", 41: "white", 3: "grey", 42: "grey", 4: "csf", 43: "csf", 5: "csf", 44: "csf",
    7: "white", 46: "white", 8: "grey", 47: "grey", 10: "deep_grey", 49: "deep_grey",
    11: "grey", 50: "grey", 12: "grey", 51: "grey", 13: "deep_grey", 52: "deep_grey",
    14: "csf", 15: "csf", 16: "white", 17: "grey", 53: "grey", 18: "grey", 54: "grey", 24: "csf",
    26: "grey", 58: "grey", 28: "white", 60: "white", 30: "vessel", 62: "vessel", 31: "csf", 63: "csf",
    77: "white", 80: "grey", 85: "white", 251: "white", 252: "white", 253: "white", 254: "white",
    255: "white", UNLABELLED_BRAIN: "white", EXTRACEREBRAL_CSF: "csf", SKULL: "bone",
    SCALP_FAT: "fat", SCALP: "soft",
}

_ASEG_PAIRS = [(2, 41), (3, 42), (4, 43), (5, 44), (7, 46), (8, 47), (10, 49), (11, 50), (12, 51), (13, 52),
               (17, 53), (18, 54), (26, 58), (28, 60), (30, 62), (31, 63)]

# The 15 structures the brain-structures model segments (class index = position + 1; 0 = other).
BRAIN_STRUCTURES = [
    (4, "Left lateral ventricle"), (43, "Right lateral ventricle"), (10, "Left thalamus"),
    (49, "Right thalamus"), (11, "Left caudate"), (50, "Right caudate"), (12, "Left putamen"),
    (51, "Right putamen"), (13, "Left pallidum"), (52, "Right pallidum"), (17, "Left hippocampus"),
    (53, "Right hippocampus"), (18, "Left amygdala"), (54, "Right amygdala"), (16, "Brainstem"),
]

# AFIDs (afids_descs.json order, 0-based): right/left pairs of the 32 fiducials.
AFIDS_LEFT_RIGHT_PAIRS = [(5, 6), (7, 8), (11, 12), (14, 15), (16, 17), (20, 21), (22, 23), (24, 25),
                          (26, 27), (28, 29), (30, 31)]


def tissue_of(code: int) -> str:
    """The tissue of a FreeSurfer code; cortical parcels (1000-1035, 2000-2035) are grey matter."""
    if 1000 <= code < 1100 or 2000 <= code < 2100:
        return "grey"
    if code not in _ASEG_TISSUE:
        raise ValueError(f"label {code} is not a FreeSurfer aseg/aparc code this generator knows; "
                         f"convert the label map to FreeSurfer codes when preparing it")
    return _ASEG_TISSUE[code]


def generation_code(code: int) -> int:
    """The code a label is drawn with: cortical parcels merge into their hemisphere's cortex (3, 42),
    as in SynthSeg, so the cortex gets one intensity instead of a patchwork of 35."""
    if 1000 <= code < 1100:
        return 3
    if 2000 <= code < 2100:
        return 42
    return code


def mirrored_code(code: int) -> int:
    """The code of the same structure on the other side (itself for midline structures)."""
    if 1000 <= code < 1100:
        return code + 1000
    if 2000 <= code < 2100:
        return code - 1000
    for left, right in _ASEG_PAIRS:
        if code == left:
            return right
        if code == right:
            return left
    return code


def point_permutation(count: int, pairs) -> list:
    """The index order that swaps each (right, left) pair: out[n] = in[perm[n]]."""
    pairs = list(pairs)
    for a, b in pairs:
        if max(a, b) >= count:
            raise ValueError(f"point pair {(a, b)} is out of range for {count} points")
    return swap_order(count, pairs)
