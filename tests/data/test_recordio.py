import struct

import numpy as np
import pytest

from facefoundry.data.images import encode_image
from facefoundry.data.recordio import MAGIC, RecordIOReader, pack_record, unpack_record, write_recordio
from facefoundry.data.sources import open_source
from facefoundry.errors import FaceFoundryError
from tests.conftest import identity_image


def test_record_layout_matches_mxnet():
    # IRHeader: flag u32, label f32, id u64, id2 u64 — then the payload
    rec = pack_record(3.0, b"JPEG", rec_id=9)
    assert rec[:24] == struct.pack("<IfQQ", 0, 3.0, 9, 0) and rec[24:] == b"JPEG"
    vec = pack_record([5.0, 7.0], b"")
    assert struct.unpack_from("<I", vec)[0] == 2 and np.allclose(unpack_record(vec)[0], [5, 7])


def test_roundtrip_insightface_layout(tmp_path):
    rng = np.random.default_rng(0)
    items = [(lab, encode_image(identity_image(lab, k, 32, rng), "jpg")) for lab in (0, 1, 2) for k in range(3)]
    write_recordio(tmp_path, items, 32)
    reader = RecordIOReader(tmp_path / "train.rec", tmp_path / "train.idx")
    head, _ = unpack_record(reader.read(0))
    assert head.tolist() == [10.0, 13.0]  # images are records 1..9, identities 10..12
    assert unpack_record(reader.read(10))[0].tolist() == [1.0, 4.0]
    raw = (tmp_path / "train.rec").read_bytes()
    assert struct.unpack_from("<I", raw)[0] == MAGIC
    src = open_source(tmp_path)
    assert src.kind == "recordio" and len(src) == 9 and src.num_classes == 3
    assert src.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert src.load(4).shape == (32, 32, 3)
    assert (tmp_path / "property").read_text().strip() == "3,32,32"


def test_bad_magic(tmp_path):
    write_recordio(tmp_path, [(0, encode_image(np.zeros((8, 8, 3), np.uint8)))], 8)
    raw = bytearray((tmp_path / "train.rec").read_bytes())
    raw[0] ^= 0xFF
    (tmp_path / "train.rec").write_bytes(bytes(raw))
    with pytest.raises(FaceFoundryError, match="bad magic at record 0"):
        open_source(tmp_path)


def test_folder_source(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("alice", "bob"):
        (tmp_path / name).mkdir()
        for k in range(2):
            (tmp_path / name / f"{k}.png").write_bytes(encode_image(identity_image(len(name), k, 16, rng)))
    src = open_source(tmp_path)
    assert src.kind == "folder" and src.identities == ["alice", "bob"] and src.labels.tolist() == [0, 0, 1, 1]
