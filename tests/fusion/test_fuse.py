from pathlib import Path

import numpy as np
import pytest

from facefoundry.data.manifest import read_manifest
from facefoundry.data.writer import DatasetWriter
from facefoundry.errors import FaceFoundryError
from facefoundry.fusion.fuse import fuse
from tests.conftest import identity_image, tiny_config


def people(
    path: Path, persons: list[int], per: int = 4, size: int = 32, seed: int = 0, meta: dict | None = None
) -> Path:
    """A dataset whose label i shows person ``persons[i]`` (the same person in two datasets looks alike)."""
    rng = np.random.default_rng(seed)
    meta = {"generator": "test", "num_classes": len(persons), "image_size": size, **(meta or {})}
    with DatasetWriter(path, meta) as w:
        for label, p in enumerate(persons):
            for _ in range(per):
                w.add(identity_image(p, 0, size, rng), label, f"person_{p}", "test", {"person": p})
    return path


def _cfg(tmp: Path, **fuse):
    return tiny_config(
        tmp,
        base={"image_size": 32},
        quality={"judge": "pixels", "leakage": {"threshold": 0.75, "training_photos": False}},
        fuse={"out": str(tmp / "fused"), "overlap_threshold": 0.65, **fuse},
    )


def test_fuse_relabels_records_sources_and_drops_cross_source_overlap(tmp_path: Path):
    a = people(tmp_path / "a", [0, 1, 2, 3, 4, 5])
    b = people(tmp_path / "b", [3, 20, 21, 22, 23, 24], seed=1)  # person 3 is in both
    cfg = _cfg(
        tmp_path,
        sources={"a": {"path": str(a), "share": 0.5}, "b": {"path": str(b), "share": 0.5}},
        identities=10,
        strategy="intra_variance",
    )
    res = fuse(cfg, log=lambda m: None)
    m = read_manifest(tmp_path / "fused")
    assert m.num_classes == 10 and sorted(set(m.label)) == list(range(10))
    assert {s: m.source.count(s) // 4 for s in set(m.source)} == {"a": 5, "b": 5}
    persons = {(s, m.row_params(i)["person"]) for i, s in enumerate(m.source)}
    assert not ({p for s, p in persons if s == "a"} & {p for s, p in persons if s == "b"})  # no one twice
    assert [(o["a_label"], o["b_label"]) for o in res.selection.overlaps] == [(3, 0)]
    # byte-for-byte copies: every hash matches its source image's, and provenance is recorded
    src = {"a": read_manifest(a), "b": read_manifest(b)}
    for i in range(len(m)):
        origin = m.row_params(i)["fused_from"]
        j = src[origin["source"]].path.index(origin["image"])
        assert src[origin["source"]].sha256[j] == m.sha256[i]
        assert (tmp_path / "fused" / m.path[i]).is_file()
    assert m.meta["fusion"]["strategy"] == "intra_variance" and res.metrics["b_dropped_overlap"] <= 1


def test_fuse_can_drop_identities_leaked_from_a_reference(tmp_path: Path):
    from facefoundry.verification.binfile import write_bin

    a = people(tmp_path / "a", [0, 1, 2, 3])
    rng = np.random.default_rng(5)
    bench = [identity_image(p, 0, 32, rng) for p in (2, 2, 40, 41)]  # person 2 is in the benchmark
    write_bin(tmp_path / "bench.bin", bench, [True, False])
    cfg = tiny_config(
        tmp_path,
        base={"image_size": 32},
        fuse={"out": str(tmp_path / "fused"), "sources": {"a": {"path": str(a)}}, "overlap_threshold": 0.65},
        quality={
            "judge": "pixels",
            "leakage": {
                "references": [str(tmp_path / "bench.bin")],
                "threshold": 0.7,
                "training_photos": False,
                "drop": True,
            },
        },
    )
    res = fuse(cfg, log=lambda m: None)
    assert res.leaked == {"a": [2]}
    fused = read_manifest(tmp_path / "fused")
    assert {fused.row_params(i)["person"] for i in range(len(fused))} == {0, 1, 3}


def test_fuse_needs_enough_identities(tmp_path: Path):
    a = people(tmp_path / "a", [0, 1])
    cfg = _cfg(tmp_path, sources={"a": {"path": str(a), "identities": 3}})
    with pytest.raises(FaceFoundryError, match="3 identities wanted, only 2"):
        fuse(cfg, log=lambda m: None)


def test_fuse_keeps_soft_labels_and_remaps_their_partners(tmp_path: Path):
    from tests.conftest import make_soft_dataset

    a = make_soft_dataset(tmp_path / "a", identities=6, per_identity=4)  # odd images: partner (label + 1) mod 6
    b = people(tmp_path / "b", [30, 31, 32], seed=1)
    cfg = _cfg(
        tmp_path, sources={"a": {"path": str(a), "identities": 4}, "b": {"path": str(b), "share": 1.0}}, identities=7
    )
    fuse(cfg, log=lambda m: None)
    m = read_manifest(tmp_path / "fused")
    src = read_manifest(a)
    old_to_new = {}
    for i in range(len(m)):
        origin = m.row_params(i)["fused_from"]
        if origin["source"] == "a":
            old_to_new[origin["label"]] = m.label[i]
    kept = 0
    for i in range(len(m)):
        origin = m.row_params(i)["fused_from"]
        if origin["source"] != "a":
            assert m.mix_label[i] == -1
            continue
        j = src.path.index(origin["image"])
        partner = src.mix_label[j]
        if partner >= 0 and partner in old_to_new:  # the partner came along: same person, its new label
            assert m.mix_label[i] == old_to_new[partner] and m.mix_weight[i] == 0.75
            kept += 1
        else:
            assert m.mix_label[i] == -1 and m.mix_weight[i] == 1.0
    assert kept > 0 and m.meta.get("soft_labels_collapsed", 0) > 0


def test_fuse_judges_every_source_with_an_encoder_none_of_them_learnt_from(tmp_path: Path):
    """Judge ≠ teacher: one source's generator was trained with sface, so auto picks the next encoder of the
    order for every source, with that judge's thresholds, and the fused dataset records both."""
    from facefoundry.quality.judging import dataset_teachers

    a = people(tmp_path / "a", [0, 1, 2, 3, 4, 5], meta={"generator": "vec2face", "encoder": {"name": "sface"}})
    b = people(tmp_path / "b", [3, 20, 21, 22, 23, 24], seed=1)  # person 3 is in both
    cfg = tiny_config(
        tmp_path,
        base={"image_size": 32},
        quality={"judge_order": ["sface", "pixels"], "leakage": {"training_photos": False}},
        fuse={
            "out": str(tmp_path / "fused"),
            "sources": {"a": {"path": str(a), "share": 0.5}, "b": {"path": str(b), "share": 0.5}},
            "identities": 10,
            "overlap_threshold": {"pixels": 0.65, "sface": -1.0},  # sface's would call every pair one person
        },
    )
    res = fuse(cfg, log=lambda m: None)
    assert [(o["a_label"], o["b_label"]) for o in res.selection.overlaps] == [(3, 0)]  # pixels' 0.65
    m = read_manifest(tmp_path / "fused")
    assert m.meta["teachers"] == ["sface"] and m.meta["fusion"]["judge"] == "pixels"
    assert m.meta["fusion"]["overlap_threshold"] == 0.65
    assert dataset_teachers(tmp_path / "fused") == ["sface"]  # validate of the fused set picks the same judge
