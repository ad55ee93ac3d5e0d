import numpy as np
import pyarrow.parquet as pq
import pytest

from facefoundry.data.check import SHOW_BAD
from facefoundry.data.manifest import MANIFEST, Manifest, check_identity_counts, read_manifest, write_manifest
from facefoundry.data.sources import open_source
from facefoundry.errors import FaceFoundryError
from facefoundry.stages.validate import validate_dataset
from tests.conftest import make_dataset


def test_roundtrip_keeps_rows_and_meta(dataset):
    m = read_manifest(dataset)
    assert len(m) == 48 and m.num_classes == 8
    assert m.meta["generator"] == "test" and m.meta["num_images"] == 48
    assert set(pq.read_table(dataset / MANIFEST).column_names) >= {
        "path",
        "label",
        "identity",
        "source",
        "params",
        "width",
        "height",
        "sha256",
    }
    assert m.row_params(5) == {"k": 5}
    src = open_source(dataset)
    assert src.kind == "manifest" and src.load(0).shape == (32, 32, 3)
    assert validate_dataset(dataset, 32, 2)["images_per_identity_min"] == 6


def test_label_out_of_range_is_named(dataset):
    m = read_manifest(dataset)
    m.label[3] = 8  # num_classes is 8
    write_manifest(dataset, m)
    with pytest.raises(FaceFoundryError, match=r"row 3 .* has label 8 outside \[0, 8\)"):
        read_manifest(dataset)


def test_empty_dataset(tmp_path):
    (tmp_path / "e").mkdir()
    write_manifest(tmp_path / "e", Manifest(meta={"num_classes": 0}))
    with pytest.raises(FaceFoundryError, match="dataset is empty"):
        read_manifest(tmp_path / "e")


def test_identity_with_one_image(tmp_path):
    ds = make_dataset(tmp_path / "d", identities=3, per_identity=2)
    m = read_manifest(ds)
    keep = [i for i in range(len(m)) if not (m.label[i] == 1 and i % 2)]
    m2 = Manifest(
        **{
            c: [getattr(m, c)[i] for i in keep]
            for c in ("path", "label", "identity", "source", "params", "width", "height", "sha256")
        },
        meta=m.meta,
    )
    write_manifest(ds, m2)
    with pytest.raises(FaceFoundryError, match=r"identity 'id_001' \(label 1\) has 1 image\(s\); at least 2"):
        validate_dataset(ds, 32, 2)
    with pytest.raises(FaceFoundryError, match=r"has 1 image\(s\); at least 2 are needed"):
        check_identity_counts(np.array(m2.label), ["id_000", "id_001", "id_002"], 2, "x")


def test_corrupt_image_is_named(dataset):
    m = read_manifest(dataset)
    (dataset / m.path[2]).write_bytes(b"not an image")
    with pytest.raises(FaceFoundryError, match=rf"{m.path[2]}: (sha256 differs|cannot decode)"):
        validate_dataset(dataset, 32, 2)
    with pytest.raises(FaceFoundryError, match=rf"{m.path[2]}: cannot decode image"):
        open_source(dataset).load(2)


def test_wrong_size_image_is_named(dataset):
    src = open_source(dataset)
    with pytest.raises(FaceFoundryError, match="is 32x32, expected 48x48"):
        src.load(0, 48)


def test_missing_dataset():
    with pytest.raises(FaceFoundryError, match="does not exist"):
        open_source("/nonexistent/ds")


def test_failed_generation_leaves_previous_dataset(tmp_path):
    ds = make_dataset(tmp_path / "d", identities=2, per_identity=2)
    before = read_manifest(ds).sha256
    from facefoundry.data.writer import DatasetWriter

    with pytest.raises(RuntimeError), DatasetWriter(ds, {"num_classes": 1}) as w:
        w.add(np.zeros((32, 32, 3), np.uint8), 0, "a", "t", {})
        raise RuntimeError("generator crashed")
    assert read_manifest(ds).sha256 == before


def test_validate_lists_every_bad_image_with_a_count(tmp_path):

    ds = make_dataset(tmp_path / "d", identities=4, per_identity=4)
    m = read_manifest(ds)
    for i in range(14):  # 14 bad images: 12 corrupt, 2 missing
        if i < 12:
            (ds / m.path[i]).write_bytes(b"bad")
        else:
            (ds / m.path[i]).unlink()
    with pytest.raises(FaceFoundryError) as err:
        validate_dataset(ds, 32, 2)
    msg = str(err.value)
    assert "14 of 16 images are bad" in msg and "… and 4 more" in msg and "\n" not in msg
    assert msg.count("sha256 differs") == SHOW_BAD and m.path[12] not in msg


def test_soft_labels_roundtrip_and_are_absent_without_mixup(tmp_path, dataset):
    from tests.conftest import make_soft_dataset

    assert "mix_label" not in pq.read_table(dataset / MANIFEST).column_names  # no mixup: the 8 columns only
    assert open_source(dataset).mix_labels is None
    soft = make_soft_dataset(tmp_path / "soft")
    m = read_manifest(soft)
    assert m.mix_label[:4] == [-1, 1, -1, 1] and m.mix_weight[:2] == [1.0, 0.75]
    src = open_source(soft)
    assert src.mix_labels.tolist()[-2:] == [-1, 0] and src.mix_weights[1] == 0.75
    assert validate_dataset(soft, 32, 2)["images"] == 36  # a soft-labelled dataset still validates
    m.mix_label[1] = m.label[1]  # partner = own label is not a mix
    write_manifest(soft, m)
    with pytest.raises(FaceFoundryError, match=r"row 1 .* soft label \(partner 0, weight 0.75\)"):
        read_manifest(soft)


def test_soft_labels_survive_a_resumed_write(tmp_path):
    from facefoundry.data.writer import DatasetWriter

    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(RuntimeError), DatasetWriter(tmp_path / "d", {"num_classes": 3}, resume_key="k") as w:
        w.add(img, 0, "a", "t", {}, 2, 0.4)
        raise RuntimeError("killed")
    with DatasetWriter(tmp_path / "d", {"num_classes": 3}, resume_key="k") as w:
        assert w.done == 1
        w.add(img, 1, "b", "t", {})
        w.add(img, 2, "c", "t", {}, 0, 0.9)
    m = read_manifest(tmp_path / "d")
    assert m.mix_label == [2, -1, 0] and m.mix_weight == [0.4, 1.0, 0.9]
