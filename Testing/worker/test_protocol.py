"""The protocol and its framing, without a process: what goes in comes out, bad frames are refused."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from nnmamba.results import ClassificationResult, LandmarkResult, SegmentationResult, SegmentInfo
from nnmamba.volume import Geometry, Volume
from nnmamba.worker import protocol
from nnmamba.worker.framing import MessageAssembler, frames
from nnmamba.worker.protocol import (CHUNK_BYTES, ErrorCode, Event, EventKind, ProtocolError,
                                     SubmitRequest, decode_event, decode_submit, encode_event,
                                     encode_submit)

from worker_helpers import make_volume


def _roundtrip(header: dict, arrays: list, max_bytes: int = 1 << 32):
    assembler = MessageAssembler(max_bytes)
    out = [assembler.feed(frame) for frame in frames(header, arrays)]
    assert all(o is None for o in out[:-1])
    assert out[-1] is not None
    return out[-1]


def test_a_submitted_volume_arrives_with_identical_voxels_and_geometry():
    volume = make_volume((20, 21, 22))
    header, arrays = encode_submit(SubmitRequest("job-1", volume, ["segmentation", "landmarks"],
                                                 {"segmentation": "x"}, {"tta": True}), token="t")
    request = decode_submit(*_roundtrip(header, arrays))
    assert request.job_id == "job-1" and request.tasks == ["segmentation", "landmarks"]
    assert request.models == {"segmentation": "x"} and request.options == {"tta": True}
    assert request.volume.array.dtype == np.int16
    np.testing.assert_array_equal(request.volume.array, volume.array)
    for name in ("origin", "spacing", "direction"):
        np.testing.assert_array_equal(getattr(request.volume.geometry, name), getattr(volume.geometry, name))


def test_voxels_travel_as_binary_frames_not_json_numbers():
    volume = make_volume((40, 40, 40))
    header, arrays = encode_submit(SubmitRequest("j", volume, ["classification"]), token="t")
    sent = list(frames(header, arrays))
    assert isinstance(sent[0], str) and len(sent[0]) < 2000
    assert json.loads(sent[0])["arrays"] == [{"name": "volume", "dtype": "<i2", "shape": [40, 40, 40]}]
    assert sum(len(f) for f in sent[1:]) == volume.array.nbytes


def test_a_large_array_is_cut_into_frames_of_at_most_the_chunk_size():
    array = np.arange(CHUNK_BYTES // 4 * 2 + 10, dtype=np.float32)
    header = {"type": "x", "arrays": [protocol.array_spec("a", array)]}
    sent = list(frames(header, [array]))
    assert [len(f) for f in sent[1:]] == [CHUNK_BYTES, CHUNK_BYTES, 40]
    _, arrays = _roundtrip(header, [array])
    np.testing.assert_array_equal(arrays["a"], array)


def test_geometry_given_as_ijk_to_ras_equals_origin_spacing_direction():
    geometry = make_volume().geometry
    from_matrix = protocol.decode_geometry({"ijk_to_ras": geometry.ijk_to_ras_matrix().tolist()})
    np.testing.assert_allclose(from_matrix.origin, geometry.origin, atol=1e-12)
    np.testing.assert_allclose(from_matrix.spacing, geometry.spacing, atol=1e-12)
    np.testing.assert_allclose(from_matrix.direction, geometry.direction, atol=1e-12)


def test_big_endian_volumes_are_sent_little_endian_with_the_same_values():
    volume = Volume(np.arange(27, dtype=">f4").reshape(3, 3, 3), Geometry.identity())
    header, arrays = encode_submit(SubmitRequest("j", volume, ["segmentation"]), token="t")
    assert header["arrays"][0]["dtype"] == "<f4"
    np.testing.assert_array_equal(arrays[0], volume.array)


def test_a_complex_volume_is_refused_before_sending_with_the_allowed_dtypes_named():
    volume = Volume(np.zeros((3, 3, 3), np.complex64), Geometry.identity())
    with pytest.raises(ValueError, match="complex64.*cannot be sent.*float32"):
        encode_submit(SubmitRequest("j", volume, ["segmentation"]), token="t")


def test_every_result_kind_survives_the_trip_exactly():
    geometry = make_volume().geometry
    results = {
        "segmentation": SegmentationResult(
            np.random.default_rng(0).integers(0, 3, (5, 6, 7)).astype(np.uint8), geometry,
            [SegmentInfo(1, "a", (1.0, 0.0, 0.0)),
             SegmentInfo(2, "b", (0.0, 1.0, 0.5), {"category": ["SCT", "1", "x"], "type": ["SCT", "2", "y"]})],
            model="seg"),
        "landmarks": LandmarkResult(["AC", "PC"], ["anterior", "posterior"],
                                    np.array([[1.5, -2.25, 3.125], [0.1, 0.2, 0.3]]), np.array([0.9, 0.1]),
                                    model="lm"),
        "classification": ClassificationResult(["T1w", "T2w"], np.array([0.25, 0.75]), model="cls"),
    }
    event = decode_event(*_roundtrip(*encode_event(Event(EventKind.RESULT, "j", 1.0, "done", results))))
    assert event.kind is EventKind.RESULT and event.job_id == "j"
    seg = event.results["segmentation"]
    np.testing.assert_array_equal(seg.labelmap, results["segmentation"].labelmap)
    assert seg.labelmap.dtype == np.uint8
    np.testing.assert_array_equal(seg.geometry.direction, geometry.direction)
    assert seg.segments[1].terminology == results["segmentation"].segments[1].terminology
    assert seg.segments[1].color == (0.0, 1.0, 0.5)
    np.testing.assert_array_equal(event.results["landmarks"].points_lps, results["landmarks"].points_lps)
    assert event.results["landmarks"].names == ["AC", "PC"]
    assert event.results["classification"].top_class == "T2w"


def _header(**fields) -> str:
    base = {"type": "submit", "protocol": 1, "token": "t", "job_id": "j", "tasks": ["segmentation"],
            "geometry": Geometry.identity().to_dict(),
            "arrays": [{"name": "volume", "dtype": "<i2", "shape": [4, 4, 4]}]}
    base.update(fields)
    return json.dumps(base)


def test_a_wrong_dtype_in_a_header_is_refused_naming_the_job_and_its_bytes_are_skipped():
    assembler = MessageAssembler(1 << 20)
    with pytest.raises(ProtocolError) as caught:
        assembler.feed(_header(arrays=[{"name": "volume", "dtype": "<c8", "shape": [4, 4, 4]}]))
    assert caught.value.code is ErrorCode.BAD_MESSAGE and caught.value.job_id == "j"
    assert "'<c8'" in str(caught.value) and "<f4" in str(caught.value)
    assert assembler.feed(b"\0" * 128) is None            # the refused message's bytes: skipped
    header, arrays = assembler.feed(_header(job_id="next", arrays=[]))
    assert header["job_id"] == "next" and arrays == {}


def test_a_header_declaring_more_than_the_limit_is_refused_as_too_large():
    assembler = MessageAssembler(max_array_bytes=1000)
    with pytest.raises(ProtocolError) as caught:
        assembler.feed(_header(arrays=[{"name": "volume", "dtype": "<f4", "shape": [10, 10, 10]}]))
    assert caught.value.code is ErrorCode.TOO_LARGE
    assert caught.value.job_id == "j" and "--max-job-mb" in str(caught.value)


def test_more_bytes_than_declared_are_refused_and_the_next_message_still_decodes():
    assembler = MessageAssembler(1 << 20)
    assert assembler.feed(_header()) is None
    with pytest.raises(ProtocolError, match="more bytes than its dtype and shape declare"):
        assembler.feed(b"\0" * 200)
    header, arrays = assembler.feed(_header(arrays=[]))
    assert header["job_id"] == "j" and arrays == {}


@pytest.mark.parametrize("text, expected", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    (_header(arrays=[{"name": "volume", "dtype": "<i2", "shape": [-1, 4]}]), "non-negative integers"),
    (_header(arrays="volume"), '"arrays" must be a list'),
])
def test_malformed_headers_are_refused_with_a_reason(text, expected):
    with pytest.raises(ProtocolError, match=expected):
        MessageAssembler(1 << 20).feed(text)


def test_a_binary_frame_without_a_header_is_refused_once_then_ignored():
    assembler = MessageAssembler(1 << 20)
    with pytest.raises(ProtocolError, match="without a message header"):
        assembler.feed(b"abc")
    assert assembler.feed(b"def") is None


@pytest.mark.parametrize("fields, expected", [
    ({"tasks": []}, "non-empty list"),
    ({"tasks": ["denoise"]}, "unknown task 'denoise'"),
    ({"models": {"segmentation": 3}}, "map task names to model names"),
    ({"geometry": {"origin": [0, 0, 0], "spacing": [1, 0, 1], "direction": np.eye(3).tolist()}},
     "positive spacing"),
    ({"geometry": {"spacing": [1, 1, 1]}}, '"origin"'),
])
def test_invalid_submit_fields_are_refused_naming_the_field(fields, expected):
    header = json.loads(_header(**fields))
    arrays = {"volume": np.ones((4, 4, 4), np.int16)}
    with pytest.raises(ProtocolError, match=expected) as caught:
        decode_submit(header, arrays)
    assert caught.value.job_id == "j"


def test_unknown_inference_options_are_refused_as_bad_input():
    header = json.loads(_header(options={"overlap": 0.5, "turbo": True}))
    with pytest.raises(ProtocolError, match="turbo") as caught:
        decode_submit(header, {"volume": np.ones((4, 4, 4), np.int16)})
    assert caught.value.code is ErrorCode.BAD_INPUT


def test_a_2d_volume_is_refused_with_its_shape():
    header = json.loads(_header())
    with pytest.raises(ProtocolError, match=r"\[4, 4\]"):
        decode_submit(header, {"volume": np.ones((4, 4), np.int16)})


def test_the_client_library_imports_without_torch():
    code = ("import sys; import nnmamba.worker, nnmamba.worker.client; "
            "from nnmamba.worker.client import WorkerClient, Event, EventKind; "
            "from nnmamba.worker.local import LocalWorker; "
            "import nnmamba.worker.protocol, nnmamba.worker.framing; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_package_and_its_protocol_import_neither_websockets_nor_the_client():
    # Slicer's Python has numpy but no websockets: the module imports protocol and errors only.
    code = ("import sys; import nnmamba.worker, nnmamba.worker.protocol, nnmamba.worker.errors; "
            "print(sorted(m for m in ('websockets', 'torch', 'nnmamba.worker.client', 'nnmamba.worker.local') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_package_still_offers_its_names_on_first_use():
    import nnmamba.worker as worker
    from nnmamba.worker.local import LocalWorker

    assert worker.LocalWorker is LocalWorker and worker.EventKind.RESULT.value == "result"
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        worker.Nothing


def test_an_unknown_task_is_refused_before_sending_with_the_known_ones_named():
    with pytest.raises(ValueError, match=r"\['segmentation', 'landmarks', 'classification'\], got \['denoise'\]"):
        encode_submit(SubmitRequest("j", make_volume(), ["denoise"]), token="t")
