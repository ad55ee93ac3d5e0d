import os
import pickle

import numpy as np
import pytest

from facefoundry.data.images import encode_image
from facefoundry.errors import FaceFoundryError
from facefoundry.verification.binfile import read_bin, write_bin


def images(n, size=16):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def test_roundtrip_png_exact(tmp_path):
    ims = images(6)
    write_bin(tmp_path / "b.bin", ims, [True, False, True], fmt="png")
    ps = read_bin(tmp_path / "b.bin", 16)
    assert ps.issame.tolist() == [True, False, True]
    assert np.array_equal(ps.images, np.stack(ims))


def test_reads_insightface_style_pickle(tmp_path):
    # insightface writes (list of encoded jpg bytes, list of bools) with pickle
    ims = images(4)
    with open(tmp_path / "lfw.bin", "wb") as f:
        pickle.dump(([encode_image(i, "jpg") for i in ims], [np.bool_(True), np.bool_(False)]), f)
    ps = read_bin(tmp_path / "lfw.bin")
    assert ps.images.shape == (4, 16, 16, 3) and ps.issame.tolist() == [True, False]


def test_odd_number_of_images(tmp_path):
    with open(tmp_path / "odd.bin", "wb") as f:
        pickle.dump(([encode_image(i) for i in images(3)], [True]), f)
    with pytest.raises(
        FaceFoundryError, match=r"odd\.bin: 3 images for 1 pairs; a \.bin needs exactly 2 images per pair"
    ):
        read_bin(tmp_path / "odd.bin")


def test_missing_and_wrong_size(tmp_path):
    with pytest.raises(FaceFoundryError, match="benchmark file does not exist"):
        read_bin(tmp_path / "nope.bin")
    write_bin(tmp_path / "b.bin", images(2), [True])
    with pytest.raises(FaceFoundryError, match="images are 16x16, the model expects 112x112"):
        read_bin(tmp_path / "b.bin", 112)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_refuses_code_in_pickle(tmp_path):
    with open(tmp_path / "evil.bin", "wb") as f:
        pickle.dump(([Evil()], []), f)
    with pytest.raises(FaceFoundryError, match=r"not an insightface \.bin .*refusing to load"):
        read_bin(tmp_path / "evil.bin")


def test_protocol_2_pickles_from_python_3_are_read_and_tricks_refused(tmp_path):
    """Python 3 writes ``bytes`` in protocol 2 as ``_codecs.encode(text, 'latin1')`` (and ``b''`` as ``bytes()``)."""
    import codecs

    rng = np.random.default_rng(0)
    images = [encode_image(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)) for _ in range(4)]
    path = tmp_path / "p2.bin"
    path.write_bytes(pickle.dumps((images, np.array([True, False])), protocol=2))
    assert b"_codecs" in path.read_bytes()
    pairs = read_bin(path)
    assert pairs.images.shape == (4, 8, 8, 3) and list(pairs.issame) == [True, False]

    class OtherCodec:  # a legal-looking call with another codec
        def __reduce__(self):
            return (codecs.encode, ("x", "zlib_codec"))

    class BigBytes:  # bytes(n) would allocate n bytes
        def __reduce__(self):
            return (bytes, (10**12,))

    for trick, why in ((OtherCodec(), "encoding 'zlib_codec'"), (BigBytes(), "bytes\\(\\) with arguments")):
        path.write_bytes(pickle.dumps(([trick] * 4, [True, False]), protocol=2))
        with pytest.raises(FaceFoundryError, match=f"not an insightface .bin .*{why}"):
            read_bin(path)
