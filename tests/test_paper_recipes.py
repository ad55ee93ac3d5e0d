"""The paper-size recipes (``experiments/paper/``, docs/paper-recipes.md).

Each recipe validates against the schema at the paper's values; each stops in one line (exit 2) while the real
data it names is missing; and each runs one training step and one generation batch at the paper's resolution and
model size on CPU, on tiny stand-in data (``make_dataset``) with random weights for the networks a user supplies,
through the same functions as ``benchmarks/paper_sizes.py``.

Tiers: the schema and missing-data checks are fast; FRCSyn's IResNet-50 step at 112 px and SynFace's render batch
are ``e2e`` (≤ ~10 s each); SynFace's FR steps, Vec2Face at ViT-B size (≈ 73 s, 4 GB) and IDSync at SD-2.1 size
(1.16 B trained parameters, ≈ 132 s, 10.5 GB) are ``heavy``, which the default run leaves out:
``.venv/bin/pytest -m heavy tests/test_paper_recipes.py`` (docs/paper-recipes.md has the measured times).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from benchmarks.paper_sizes import RECIPES, fr_config, idsync_parts, recipe_config, render_config, vec2face_parts
from facefoundry.data.sources import open_source
from facefoundry.generators.feed import to_signed
from tests.conftest import make_dataset

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "experiments" / "paper"
# the first command of each recipe that reads real data, and the placeholder it must name
FIRST_READ = {
    "frcsyn_protocol": ("train", "data/paper/frcsyn_train"),
    "vec2face_hsface10k": ("train-vec2face", "data/paper/webface4m_112"),
    "idsync_paper": ("train-idsync", "data/paper/idsync_train_224"),
    "synface_paper": ("synlfw", "data/benchmarks/lfw.bin"),
}


def placeholders(raw: object) -> set[str]:
    """Every ``data/…`` path a recipe file names: the real data a user supplies."""
    if isinstance(raw, dict):
        return set().union(*(placeholders(v) for v in raw.values())) if raw else set()
    if isinstance(raw, list):
        return set().union(*(placeholders(v) for v in raw)) if raw else set()
    return {raw} if isinstance(raw, str) and raw.startswith("data/") else set()


def stand_in_images(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """A stand-in dataset read back as the generators read it: NCHW in [-1, 1], and its labels."""
    source = open_source(folder)
    images = torch.stack([torch.from_numpy(source.load(i)) for i in range(len(source))])
    return to_signed(images), torch.as_tensor(source.labels, dtype=torch.long)


def test_recipes_validate_at_the_papers_values() -> None:
    assert sorted(p.stem for p in PAPER.glob("*.yaml")) == sorted(RECIPES)
    readme = (PAPER / "README.md").read_text()
    for name in RECIPES:
        cfg = recipe_config(name)  # every key validates against the schema
        assert cfg.base.image_size == 112, name
        t = cfg.train
        assert (t.backbone.name, t.backbone.embedding_size, t.backbone.layers) == ("r50", 512, None), name
        assert (t.head.name, t.head.s, t.head.m2) == ("arcface", 64.0, 0.5), name
        assert (t.batch_size, t.lr, t.momentum, t.epochs, t.schedule) == (128, 0.1, 0.9, 26, "step"), name
        assert "twins" not in cfg.evaluate.benchmarks, name
        named = placeholders(yaml.safe_load((PAPER / f"{name}.yaml").read_text()))
        assert FIRST_READ[name][1] in named, name
        for path in named:  # each is documented, and none is shipped (it stays a placeholder)
            assert path in readme or path.startswith("data/benchmarks/"), (name, path)
            assert not (ROOT / path).exists(), (name, path)
        assert f"experiments/paper/{name}.yaml" in readme
    v = recipe_config("vec2face_hsface10k").vec2face
    assert (v.image_size, v.patch, v.width, v.depth, v.heads, v.decoder_depth, v.decoder_heads) == (
        112,
        16,
        768,
        12,
        12,
        8,
        16,
    )
    assert (v.epochs, v.batch_size, v.base_lr, v.disc_start_epoch) == (100, 64, 4e-5, 80)
    c = recipe_config("idsync_paper").idsync
    assert (c.image_size, c.vae_channels, c.unet_channels, c.text_width, c.text_layers) == (
        224,
        [128, 256, 512, 512],
        [320, 640, 1280, 1280],
        1024,
        23,
    )
    assert (c.batch_size, c.grad_accumulation, c.lr, c.epochs, c.identity_weight) == (8, 64, 1.6e-5, 4, 0.01)
    for name in ("vec2face_hsface10k", "idsync_paper", "synface_paper"):
        g = recipe_config(name).generate
        assert (g.identities, g.images_per_identity) == (10_000, 50), name
    assert recipe_config("synface_paper").generate.mixup.enabled


def recipe_checkout(tmp: Path) -> Path:
    """A checkout's params.yaml and paper recipes, without data/paper/ (or anything under data/)."""
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "params.yaml", tmp / "params.yaml")
    shutil.copytree(PAPER, tmp / "experiments" / "paper")
    return tmp


def assert_stops_in_one_line(name: str, monkeypatch, capsys) -> None:
    """``facefoundry -e experiments/paper/<name>.yaml <its first data-reading command>``, in-process in the cwd:
    exit 2, one ``error:`` line naming the placeholder."""
    from facefoundry import cli

    command, placeholder = FIRST_READ[name]
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(sys, "argv", ["facefoundry", "-e", f"experiments/paper/{name}.yaml", command])
    with pytest.raises(SystemExit) as stop:
        cli.main()
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert stop.value.code == 2, (name, err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: ") and placeholder in lines[0], (name, err[-2000:])


def test_a_recipe_without_its_data_stops_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """In a checkout without data/paper/: FRCSyn's `train` as a user runs it (a subprocess), and the first
    data-reading command of FRCSyn, Vec2Face and IDSync in-process. SynFace's (`synlfw`, which opens its MLflow
    run before it reads the benchmark: ≈ 6 s) is checked in its `heavy` test."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(OMP_NUM_THREADS="1", GIT_PYTHON_REFRESH="quiet")
    command, placeholder = FIRST_READ["frcsyn_protocol"]
    proc = subprocess.run(
        [sys.executable, "-m", "facefoundry", "-e", "experiments/paper/frcsyn_protocol.yaml", command],
        cwd=recipe_checkout(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and proc.stderr == f"error: {placeholder}: dataset path does not exist\n", proc.stderr
    monkeypatch.chdir(tmp_path)
    for name in ("frcsyn_protocol", "vec2face_hsface10k", "idsync_paper"):
        assert_stops_in_one_line(name, monkeypatch, capsys)


@pytest.mark.e2e
def test_frcsyn_protocol_one_training_step(tmp_path: Path) -> None:
    from facefoundry.train.trainer import Trainer

    ds = make_dataset(tmp_path / "ds", identities=2, per_identity=1, size=112)
    tr = Trainer(fr_config("frcsyn_protocol", ds, tmp_path / "out", batch=2), log=lambda m: None)
    assert tr.feeder.steps_per_epoch() == 1
    assert 43e6 < sum(p.numel() for p in tr.backbone.parameters()) < 44e6  # IResNet-50, 512-d
    assert tr.head is not None and tr.head.s == 64.0 and tr.head.margins == (1.0, 0.5, 0.0)
    hist = tr.fit().history
    assert len(hist) == 1 and math.isfinite(hist[0].loss) and hist[0].lr == pytest.approx(0.1)


def synface_batch(tmp: Path) -> Path:
    """One generation batch of the SynFace recipe: 2 identities × 2 renders at 112 px, identity mixup on."""
    from facefoundry.generators.render.generate import generate_render

    out = generate_render(render_config("synface_paper", tmp / "syn", identities=2, per_identity=2), lambda m: None)
    source = open_source(out)
    assert len(source) == 4 and source.load(0).shape == (112, 112, 3)
    assert source.mix_labels is not None  # identity mixup: the soft labels ride in the manifest
    return out


@pytest.mark.e2e
def test_synface_one_generation_batch(tmp_path: Path) -> None:
    synface_batch(tmp_path)


@pytest.mark.heavy
def test_synface_training_steps_on_its_generation_batch(tmp_path: Path, monkeypatch, capsys) -> None:
    """The FR step of the SynFace recipe (IResNet-50 at 112 px, soft labels), and its missing-LFW stop. The same
    network's step runs in the e2e tier under FRCSyn; this one takes 14-31 s here (two cold steps at batch 2: a
    first step at batch 4 took ≈ 12 s alone)."""
    from facefoundry.train.trainer import Trainer

    out = synface_batch(tmp_path)
    tr = Trainer(fr_config("synface_paper", out, tmp_path / "train", batch=2), log=lambda m: None)
    assert tr.feeder.steps_per_epoch() == 2 and tr.num_classes == 2
    hist = tr.fit().history
    assert len(hist) == 1 and math.isfinite(hist[0].loss)
    monkeypatch.chdir(recipe_checkout(tmp_path / "checkout"))
    assert_stops_in_one_line("synface_paper", monkeypatch, capsys)


@pytest.mark.heavy
def test_vec2face_paper_size_one_training_step_and_generation_batch(tmp_path: Path) -> None:
    images, _ = stand_in_images(make_dataset(tmp_path / "ds", identities=2, per_identity=1, size=112))
    parts = vec2face_parts(recipe_config("vec2face_hsface10k"), images)
    assert parts.model.image_size == 112 and parts.model.rows == 49
    assert 170e6 < sum(p.numel() for p in parts.model.parameters()) < 180e6
    terms = parts.train()
    assert {"mse", "identity", "gan", "disc", "total"} <= set(terms)
    assert all(math.isfinite(v) for v in terms.values()), terms
    made = parts.generate()
    assert made.shape == (2, 3, 112, 112) and made.abs().max() <= 1


@pytest.mark.heavy
def test_idsync_paper_size_one_training_step_and_generation_batch(tmp_path: Path) -> None:
    """Batch 1 (one photo of a 2-identity classifier), and 2 of the recipe's 25 DPM-Solver++ steps: the full 25
    take ≈ 6 min on 2 busy cores (benchmarks/paper_sizes.py times them)."""
    images, labels = stand_in_images(make_dataset(tmp_path / "ds", identities=2, per_identity=1, size=224))
    cfg = recipe_config("idsync_paper", "generate.idsync.steps=2")
    parts = idsync_parts(cfg, images[:1], labels[:1], 2, tmp_path)
    assert parts.model.latent_size == 28 and tuple(parts.latents.shape) == (1, 4, 28, 28)
    assert 865e6 < sum(p.numel() for p in parts.model.unet.parameters()) < 867e6  # SD-2.1's UNet
    terms = parts.train()
    assert {"denoise", "identity", "loss", "grad_norm"} <= set(terms)
    assert all(math.isfinite(v) for v in terms.values()), terms
    made = parts.generate()
    assert made.shape == (1, 3, 224, 224) and made.abs().max() <= 1
