"""Output files: .seg.nrrd (SimpleITK and Slicer read it back), markups JSON against Slicer's
schema, probability tables, and the no-overwrite / no-half-written rules."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import SimpleITK as sitk

from nnmamba.errors import OutputExistsError
from nnmamba.io import markups_dict, read_volume, write_atomically, write_results, write_segmentation
from nnmamba.results import ClassificationResult, LandmarkResult, SegmentationResult, SegmentInfo
from nnmamba.volume import Geometry, Volume

SCHEMA = Path(__file__).parent / "data" / "markups-schema-v1.0.3.json"
_C, _S = np.cos(np.deg2rad(25)), np.sin(np.deg2rad(25))
DIRECTION = np.array([[_C, -_S, 0.0], [_S, _C, 0.0], [0.0, 0.0, 1.0]])   # oblique: 25 degrees about S
GEOMETRY = Geometry(np.array([-12.5, 30.25, -7.0]), np.array([0.8, 1.1, 3.5]), DIRECTION)
THALAMUS = {"category": ["SCT", "123037004", "Anatomical Structure"], "type": ["SCT", "119406000", "Thalamus"],
            "type_modifier": ["SCT", "7771000", "Left"]}
SEGMENTS = [SegmentInfo(1, "Left thalamus", (0.48, 0.4, 0.15), THALAMUS),
            SegmentInfo(3, "Brainstem", (0.47, 0.62, 0.69), None)]


def segmentation() -> SegmentationResult:
    labels = np.zeros((6, 9, 11), dtype=np.uint16)
    labels[1:3, 2:5, 3:7] = 1
    labels[4, 6:8, 1:4] = 3
    return SegmentationResult(labels, GEOMETRY, SEGMENTS, model="tiny-seg")


def landmarks() -> LandmarkResult:
    return LandmarkResult(["AC", "PC"], ["AC", "PC"], np.array([[1.5, -2.0, 3.25], [0.0, -27.5, 1.0]]),
                          np.array([0.93, 0.41]), model="tiny-landmarks")


def classification() -> ClassificationResult:
    return ClassificationResult(["CT", "MR"], np.array([0.125, 0.875]), model="tiny-cls")


def volume() -> Volume:
    rng = np.random.default_rng(0)
    return Volume(rng.normal(100, 20, size=(1, 6, 9, 11)).astype(np.float32), GEOMETRY)


def test_seg_nrrd_reads_back_with_simpleitk_with_labels_geometry_and_segment_metadata(tmp_path):
    path = write_segmentation(segmentation(), tmp_path / "case.seg.nrrd")
    image = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), segmentation().labelmap)
    np.testing.assert_allclose(image.GetOrigin(), GEOMETRY.origin, rtol=1e-12)
    np.testing.assert_allclose(image.GetSpacing(), GEOMETRY.spacing, rtol=1e-12)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), DIRECTION, atol=1e-12)
    meta = {k: image.GetMetaData(k) for k in image.GetMetaDataKeys()}
    assert meta["Segment0_Name"] == "Left thalamus" and meta["Segment0_LabelValue"] == "1"
    assert meta["Segment1_Name"] == "Brainstem" and meta["Segment1_LabelValue"] == "3"
    assert [float(c) for c in meta["Segment0_Color"].split()] == pytest.approx([0.48, 0.4, 0.15])
    assert meta["Segment0_Extent"] == "0 10 0 8 0 5"
    assert "SCT^119406000^Thalamus~SCT^7771000^Left" in meta["Segment0_Tags"]
    assert meta["Segment1_Tags"] == ""
    assert meta["Segmentation_MasterRepresentation"] == "Binary labelmap"


def test_slicer_opens_the_seg_nrrd_as_a_segmentation_with_names_colours_terminology_and_geometry(tmp_path):
    slicer = pytest.importorskip("slicer")
    import vtk

    path = write_segmentation(segmentation(), tmp_path / "case.seg.nrrd")
    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(node)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1
    seg = node.GetSegmentation()
    assert seg.GetNumberOfSegments() == 2
    first = seg.GetSegment("Segment_1")
    assert first.GetName() == "Left thalamus" and first.GetLabelValue() == 1
    assert first.GetColor() == pytest.approx((0.48, 0.4, 0.15), abs=1e-4)
    entry = vtk.mutable("")
    assert first.GetTag("TerminologyEntry", entry)
    assert "SCT^119406000^Thalamus" in str(entry)
    labelmap = first.GetRepresentation("Binary labelmap")
    matrix = vtk.vtkMatrix4x4()
    labelmap.GetImageToWorldMatrix(matrix)
    ijk_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    np.testing.assert_allclose(ijk_to_ras, GEOMETRY.ijk_to_ras_matrix(), atol=1e-6)


def test_markups_json_validates_against_slicers_schema_and_keeps_lps_names_and_confidence(tmp_path):
    schema = json.loads(SCHEMA.read_text())
    document = markups_dict(landmarks())
    jsonschema.validate(document, schema)
    markup = document["markups"][0]
    assert markup["coordinateSystem"] == "LPS" and markup["type"] == "Fiducial"
    points = markup["controlPoints"]
    assert [p["label"] for p in points] == ["AC", "PC"]
    assert points[0]["position"] == [1.5, -2.0, 3.25]
    assert points[0]["description"] == "AC (confidence 0.93)"


def test_write_results_writes_every_file_and_refuses_to_clobber_any(tmp_path):
    results = {"segmentation": segmentation(), "landmarks": landmarks(), "classification": classification()}
    written = write_results(results, volume(), tmp_path, "case")
    names = sorted(p.name for p in written)
    assert names == ["case.mrk.json", "case.probabilities.json", "case.probabilities.tsv",
                     "case.seg.nrrd", "case.summary.png", "case.volumes.tsv"]
    probabilities = json.loads((tmp_path / "case.probabilities.json").read_text())
    assert probabilities["top_class"] == "MR" and probabilities["probabilities"]["CT"] == 0.125
    assert (tmp_path / "case.probabilities.tsv").read_text().splitlines()[1] == "CT\t0.125000"
    assert (tmp_path / "case.summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    (tmp_path / "case.mrk.json").write_text("user's edits")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(OutputExistsError, match="case.mrk.json"):
        write_results(results, volume(), tmp_path, "case")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    write_results(results, volume(), tmp_path, "case", overwrite=True)
    assert (tmp_path / "case.mrk.json").read_text() != "user's edits"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_writer_that_fails_leaves_neither_a_partial_file_nor_a_temporary_one(tmp_path):
    target = tmp_path / "case.seg.nrrd"
    target.write_text("the old result")

    def failing(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, failing)
    assert target.read_text() == "the old result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.seg.nrrd"]


def test_the_embedded_sample_is_a_real_brain_mr_volume():
    from nnmamba.data import sample_volume_path

    vol = read_volume(sample_volume_path())
    assert vol.array.shape == (1, 25, 256, 256)
    np.testing.assert_allclose(vol.geometry.spacing, [0.78125, 0.78125, 6.5], rtol=1e-6)
    assert vol.array.std() > 100


def test_the_volumes_table_gives_each_segment_in_millilitres_from_the_voxel_size(tmp_path):
    from nnmamba.io.tables import write_segment_volumes_tsv
    result = segmentation()
    path = write_segment_volumes_tsv(result, tmp_path / "case.volumes.tsv")
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    assert rows[0] == ["label", "segment", "voxels", "volume_mL"]
    millilitresPerVoxel = float(np.prod(result.geometry.spacing)) / 1000
    for (label, name, voxels, ml), info in zip(rows[1:], result.segments):
        assert (int(label), name) == (info.label, info.name)
        assert int(voxels) == int((result.labelmap == info.label).sum())
        assert float(ml) == pytest.approx(int(voxels) * millilitresPerVoxel, abs=5e-4)
    assert len(rows) == 1 + len(result.segments)
