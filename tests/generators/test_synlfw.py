"""Syn-LFW (SynFace): a synthetic twin of a verification benchmark, and Syn-LFW-R (identity mixing ratio R)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facefoundry.data.writer import DatasetWriter
from facefoundry.errors import FaceFoundryError
from facefoundry.generators.descriptor import GeneratorDescriptor
from facefoundry.generators.render.generate import sample_identities
from facefoundry.generators.render.head import IDENTITY
from facefoundry.generators.render.renderer import FaceRenderer
from facefoundry.generators.synlfw import make_synlfw, pair_plan, sidecar_path
from facefoundry.sampling.mixup import draw_partners
from facefoundry.verification.binfile import read_bin, write_bin
from tests.conftest import identity_image, tiny_config

ROOT = Path(__file__).resolve().parents[2]
PAIRS = 20  # the config's minimum; 40 images of 32 px render in well under a second


def quiet(_):
    pass


def cfg_for(tmp: Path, name: str = "synlfw", **synlfw):
    return tiny_config(tmp, benchmark={"pairs": PAIRS}, synlfw={"out": str(tmp / f"{name}.bin"), **synlfw})


@pytest.fixture
def spy(monkeypatch):
    """Every FaceRenderer.render call's identity vectors and variations, in order."""
    calls = {"vectors": [], "variations": []}
    original = FaceRenderer.render

    def render(self, identities, variations):
        calls["vectors"] += [i.vector.copy() for i in identities]
        calls["variations"] += [dict(v) for v in variations]
        return original(self, identities, variations)

    monkeypatch.setattr(FaceRenderer, "render", render)
    return calls


def reference_bin(path: Path, issame: list[bool], size: int = 24) -> Path:
    rng = np.random.default_rng(0)
    write_bin(path, rng.integers(0, 256, (2 * len(issame), size, size, 3), dtype=np.uint8), issame)
    return path


def test_copies_pair_count_and_issame_order_of_the_reference(tmp_path):
    issame = [
        True,
        True,
        False,
        True,
        False,
        False,
        False,
        True,
        True,
        False,
        True,
        False,
        True,
        False,
        False,
        True,
        True,
        True,
        False,
        False,
        True,
        False,
        True,
    ]  # 23 pairs, not alternating
    ref = reference_bin(tmp_path / "lfw.bin", issame)
    out = make_synlfw(cfg_for(tmp_path, like=str(ref)), quiet)
    got = read_bin(out)
    assert len(got.issame) == len(issame) and got.issame.tolist() == issame
    assert got.images.shape == (2 * len(issame), 32, 32, 3)  # rendered at base.image_size, not the reference's
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["reference"] == str(ref) and meta["pairs"] == 23 and meta["positives"] == sum(issame)
    # without a reference: benchmark.pairs pairs, alternating same/different
    plain = read_bin(make_synlfw(cfg_for(tmp_path, "plain"), quiet))
    assert plain.issame.tolist() == [k % 2 == 0 for k in range(PAIRS)]


def test_identities_are_unseen_and_belong_to_their_pairs(tmp_path, spy):
    cfg = cfg_for(tmp_path)
    make_synlfw(cfg, quiet)
    g = cfg.generate
    train = np.stack([i.vector for i in sample_identities(g.identities, g.min_identity_distance, cfg.base.seed)])
    rendered = np.stack(spy["vectors"])
    assert rendered.shape == (2 * PAIRS, len(IDENTITY))
    rms = np.linalg.norm(rendered[:, None] - train[None], axis=-1) / np.sqrt(len(IDENTITY))
    assert rms.min() >= g.min_identity_distance  # none equal to, none closer than the separation to, a training one
    issame = np.arange(PAIRS) % 2 == 0
    a, b = rendered[0::2], rendered[1::2]
    same = np.all(a == b, axis=1)
    assert np.array_equal(same, issame)  # genuine pairs: one identity twice; impostors: two identities
    _, n = pair_plan(issame)
    assert n == len(np.unique(rendered, axis=0)) == 30  # every pair has its own identities


def test_ratio_one_is_plain_synlfw_and_mixing_is_recorded(tmp_path, spy):
    plain = read_bin(make_synlfw(cfg_for(tmp_path, "plain"), quiet))
    base_vecs, base_vars = np.stack(spy["vectors"]), list(spy["variations"])
    one = read_bin(make_synlfw(cfg_for(tmp_path, "r100", ratio=1.0), quiet))
    assert np.array_equal(one.images, plain.images)
    spy["vectors"].clear(), spy["variations"].clear()
    out = make_synlfw(cfg_for(tmp_path, "r050", ratio=0.5), quiet)
    half = read_bin(out)
    assert np.array_equal(half.issame, plain.issame) and not np.array_equal(half.images, plain.images)
    assert spy["variations"] == base_vars  # the mixing has its own random stream: poses, light, … unchanged
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["ratio"] == 0.5 and meta["mixed_images"] == 2 * PAIRS and meta["generator"] == "render"
    labels, partners = np.array(meta["image_labels"]), np.array(meta["partners"])
    assert np.all(partners != labels) and meta["identities"] == 30
    own = {int(lab): base_vecs[j] for j, lab in enumerate(labels)}
    expected = 0.5 * base_vecs + 0.5 * np.stack([own[int(p)] for p in partners])
    np.testing.assert_allclose(np.stack(spy["vectors"]), expected, atol=1e-12)


def test_table_overrides_yaw_of_its_rows(tmp_path, spy):
    plain = read_bin(make_synlfw(cfg_for(tmp_path, "plain"), quiet))
    sampled = [v["yaw"] for v in spy["variations"]]
    yaw = list(sampled)
    yaw[0], yaw[3] = 40.0, -40.0
    table = tmp_path / "stats.csv"
    table.write_text("yaw\n" + "".join(f"{y!r}\n" for y in yaw))
    spy["variations"].clear()
    got = read_bin(make_synlfw(cfg_for(tmp_path, "table", table=str(table)), quiet))
    assert [v["yaw"] for v in spy["variations"]] == yaw
    changed = [j for j in range(2 * PAIRS) if not np.array_equal(got.images[j], plain.images[j])]
    assert changed == [0, 3]  # only the rows whose yaw the table changed


@pytest.mark.parametrize(
    "text,problem",
    [
        (None, "does not exist"),
        ("yaw\n1\n2\n", "2 data rows; Syn-LFW needs one per image, 40"),
        ("yaw,glasses\n" + "1,0\n" * 40, "unknown column 'glasses'"),
        ("yaw,smile\n" + "1,0.5\n" * 39 + "1,big\n", "line 41, column 'smile': 'big' is not a finite number"),
    ],
)
def test_bad_table_is_one_line_naming_file_and_problem(tmp_path, text, problem):
    table = tmp_path / "stats.csv"
    if text is not None:
        table.write_text(text)
    with pytest.raises(FaceFoundryError) as e:
        make_synlfw(cfg_for(tmp_path, table=str(table)), quiet)
    msg = str(e.value)
    assert str(table) in msg and problem in msg and "\n" not in msg
    assert not (tmp_path / "synlfw.bin").exists()


def test_the_stage_checks_its_inputs_before_it_opens_a_run(tmp_path):
    from facefoundry.stages.synlfw import run_synlfw

    table = tmp_path / "stats.csv"
    table.write_text("yaw\n1\n")
    with pytest.raises(FaceFoundryError, match="data rows"):
        run_synlfw(cfg_for(tmp_path, table=str(table)))
    assert not (tmp_path / "mlflow.db").exists()  # no MLflow run opened, none left FAILED


FAKE_NAME = "synlfw-test-fake"
SEEN: list = []  # the configs the fake generator was called with


def fake_generate(cfg, log):
    """Writes 2 easy images per identity (and honours identity mixup)."""
    g = cfg.generate
    SEEN.append(cfg)
    labels = np.repeat(np.arange(g.identities), g.images_per_identity)
    mix = (
        draw_partners(labels, g.identities, np.array(g.mixup.phi), np.random.default_rng(0))
        if g.mixup.enabled
        else None
    )
    rng = np.random.default_rng(cfg.base.seed)
    with DatasetWriter(g.out, {"generator": FAKE_NAME, "num_classes": g.identities, "image_size": 32}) as w:
        for j, label in enumerate(labels):
            img = identity_image(int(label), j, 32, rng)
            if mix is None:
                w.add(img, int(label), f"id_{label:03d}", FAKE_NAME, {})
            else:
                w.add(img, int(label), f"id_{label:03d}", FAKE_NAME, {}, int(mix.partner[j]), float(mix.phi[j]))
    return Path(g.out)


FAKE = GeneratorDescriptor(name=FAKE_NAME, description="a test generator", generate=f"{__name__}:fake_generate")


@pytest.fixture
def fake_generator(monkeypatch):
    """A generator in the table (as a row of its own), so any code that looks names up finds it."""
    from facefoundry.generators import table

    monkeypatch.setitem(table.BUILTIN, FAKE_NAME, f"{__name__}:FAKE")
    table._rows.cache_clear()
    SEEN.clear()
    yield FAKE_NAME, SEEN
    monkeypatch.undo()
    table._rows.cache_clear()
    table.descriptor.cache_clear()


def test_any_registered_generator_makes_the_pairs(tmp_path, fake_generator):
    name, seen = fake_generator
    ref = reference_bin(tmp_path / "lfw.bin", [True, False, False, True] * 5 + [False, True])
    out = make_synlfw(cfg_for(tmp_path, like=str(ref), generator=name), quiet)
    sub = seen[-1]
    assert sub.generate.generator == name and sub.generate.identities == 11 + 2 * 11
    assert sub.generate.images_per_identity == 2 and not sub.generate.mixup.enabled
    assert sub.base.seed == 7 + 2_000_003 and Path(sub.generate.out).parent.parent == tmp_path
    got = read_bin(out)
    assert got.issame.tolist() == read_bin(ref).issame.tolist()
    # identity_image draws each identity's colours from its label: genuine pairs alike, impostors not
    d = np.abs(got.images[0::2].astype(float) - got.images[1::2]).mean(axis=(1, 2, 3))
    assert d[got.issame].max() < d[~got.issame].min()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".synlfw")) == []  # temp folder gone

    mixed = make_synlfw(cfg_for(tmp_path, "mixed", like=str(ref), generator=name, ratio=0.5), quiet)
    assert seen[-1].generate.mixup.enabled and seen[-1].generate.mixup.phi == [0.5]
    meta = json.loads(sidecar_path(mixed).read_text())
    assert meta["generator"] == name and meta["ratio"] == 0.5 and meta["mixed_images"] == 44
    assert set(meta["phi"]) == {0.5}

    with pytest.raises(FaceFoundryError, match=r"synlfw\.table sets renderer variations"):
        make_synlfw(cfg_for(tmp_path, generator=name, table=str(tmp_path / "t.csv")), quiet)
    with pytest.raises(FaceFoundryError, match="unknown generator 'nope'"):
        make_synlfw(cfg_for(tmp_path, generator="nope"), quiet)


def test_result_is_an_evaluable_benchmark(tmp_path):
    from facefoundry.data.transforms import Preprocess
    from facefoundry.models.bundle import FRModel
    from facefoundry.models.iresnet import build_backbone
    from facefoundry.stages.evaluate import evaluate_model

    cfg = cfg_for(tmp_path)
    out = make_synlfw(cfg, quiet)
    model = FRModel(build_backbone("iresnet", 32, 16, 8, [1, 1, 1, 1]), Preprocess(image_size=32), {})
    (res,) = evaluate_model(model, {"synlfw": str(out)}, cfg)
    assert res.pairs == PAIRS and len(res.fold_accuracies) == 10 and 0 <= res.accuracy <= 1


def test_cli_bad_ratio_is_one_line_exit_2(tmp_path):
    cfg_for(tmp_path)  # writes tmp_path/params.yaml
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "GIT_PYTHON_REFRESH": "quiet"}
    cmd = [sys.executable, "-m", "facefoundry", "--params", str(tmp_path / "params.yaml"), "synlfw", "--ratio", "1.5"]
    proc = subprocess.run(cmd, check=False, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert line.startswith("error:") and "synlfw.ratio" in line
