"""The one onnxruntime session helper: a graph it cannot run is one line naming the file."""

import pytest

from facefoundry.errors import FaceFoundryError
from facefoundry.identity.onnx_session import cpu_session
from facefoundry.identity.yunet import model_path


def test_a_graph_onnxruntime_refuses_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(FaceFoundryError, match=r"broken\.onnx: onnxruntime cannot run the model \(") as err:
        cpu_session(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(FaceFoundryError, match=r"^yunet\.onnx: onnxruntime cannot run YuNet"):
        cpu_session(b"junk", name="yunet.onnx", what="YuNet")


def test_threads_are_honoured():
    session = cpu_session(model_path(), threads=1)
    assert session.get_inputs()[0].name and session.get_session_options().intra_op_num_threads == 1
